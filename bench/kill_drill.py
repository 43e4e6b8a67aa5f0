"""The kill drill of issue 7 (:mod:`sim.kill_drill`): a real ``parkctl run`` process SIGKILLed in the
middle of a demand-response event and started again, in front of the simulated park.

Prints, per drill: what was run, the wall time, records counted on the park's side against the database,
seconds over the event's cap before the kill / in the kill window / after it, and the time from the
restart to the first cycle. Writes ``kill_drill.json`` (and the controller's logs) per drill under --out.

    PATH=/usr/sbin:$PATH .venv/bin/python bench/kill_drill.py [--kill-mode both] [--speed 40] [--out out/kill_drill]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, get_args

from sim.kill_drill import DrillOptions, KillMode, run_drill


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--scenario", default="faults-day", help="shipped name or a YAML path (with a DR call)")
    p.add_argument("--start", default="15:45", help="local time on the scenario's day the park starts")
    p.add_argument("--kill-at", default="16:12", help="local time from which the controller is killed")
    p.add_argument("--end", default="16:35", help="local time the restarted controller gets SIGTERM")
    p.add_argument("--speed", type=float, default=40.0, help="scaled time: park seconds per wall second")
    p.add_argument("--strategy", choices=["rules", "mpc"], default="rules")
    p.add_argument("--kill-mode", choices=[*get_args(KillMode), "both"], default="both",
                   help="between_cycles: a committed cycle, the next not due; on_write: as a device applies a setpoint")
    p.add_argument("--restart-pause", type=float, default=0.0, help="wall seconds between kill and restart")
    p.add_argument("--history-days", type=int, default=None, help="prior days (default: the scenario's)")
    p.add_argument("--out", type=Path, default=Path("out/kill_drill"))
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    modes: list[KillMode] = list(get_args(KillMode)) if args.kill_mode == "both" else [args.kill_mode]
    figures: dict[str, dict[str, Any]] = {}
    for mode in modes:
        opts = DrillOptions(out_dir=args.out / mode, scenario=args.scenario, start=args.start, kill_at=args.kill_at,
                            end=args.end, speed=args.speed, strategy=args.strategy, kill_mode=mode,
                            restart_pause_s=args.restart_pause, history_days=args.history_days)  # fmt: skip
        result = asyncio.run(run_drill(opts))
        print(result.summary())
        print(f"  details in {opts.out_dir}/kill_drill.json, controller logs controller-1.log, controller-2.log")
        rec = result.report["records"]
        figures[mode] = {
            "wall_s": round(result.wall_s, 1), "restart_to_first_cycle_s": round(result.restart_to_first_cycle_s, 2),
            "park_s_without_controller": round(result.down_sim_s, 1),
            "setpoints_park_db": [rec["setpoints"]["park_received"], rec["setpoints"]["db_rows"]],
            "alarms_park_db": [rec["alarms"]["raised"], rec["alarms"]["db_rows"]],
            "dr_quarter_hours_expected_db_complete": [rec["dr_intervals"]["expected_slots"],
                                                      rec["dr_intervals"]["db_slots"],
                                                      rec["dr_intervals"]["complete_slots"]],
            "over_cap_s_before_kill_in_window_after": [result.over_cap_before_kill_s, result.over_cap_in_window_s,
                                                       result.over_cap_after_window_s],
            "lost": result.lost,
        }  # fmt: skip
    for name, fig in figures.items():
        print(f"{name}: {json.dumps(fig)}")
    lost_any = any(f["lost"]["setpoints"] or f["lost"]["alarms"] or f["lost"]["plans"] or f["lost"]["dr_quarter_hours"]
                   for f in figures.values())  # fmt: skip
    return 1 if lost_any else 0


if __name__ == "__main__":
    sys.exit(main())
