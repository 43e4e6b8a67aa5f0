"""The ``parkctl replay`` command line, kept apart so ``parkctl`` starts without the replay's imports."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from parkctl.argtypes import bounded_float

STRATEGIES = ("none", "rules", "mpc", "oracle")


def _strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"strategies are a comma list of {', '.join(STRATEGIES)}")
    return names


def add_replay_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("replay", help="replay days of a scenario in process for several strategies")
    p.add_argument("--scenario", default="chenzhou-summer-weekday", help="shipped name or a YAML path")
    p.add_argument("--days", type=bounded_float("days", 0, 14), default=1.0)
    p.add_argument("--strategies", type=_strategies, default=list(STRATEGIES), help="comma list (default: all)")
    p.add_argument("--out", type=Path, default=Path("out/replay"))
    p.add_argument("--cycle", type=float, default=60.0, help="control cycle in s (default 60)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none anyway when stderr is no TTY)")
    p.add_argument("--no-report", action="store_true", help="skip DIR/report.html and DIR/plots/ (needs matplotlib)")
    p.add_argument("--protocol", action="store_true",
                   help="run rules/mpc/oracle over real Modbus TCP and MQTT (slower; none stays in process)")
    p.add_argument("--mqtt-url", help="with --protocol: broker to use (default: a private Mosquitto)")


def cmd_replay(args: argparse.Namespace) -> int:
    from sim.progress import progress_wanted, tqdm_progress
    from sim.replay import format_table, replay
    from sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    started = time.perf_counter()
    bars = tqdm_progress(progress_wanted(not args.no_progress))
    result = replay(
        scenario,
        args.days,
        args.strategies,
        args.out,
        cycle_s=args.cycle,
        seed=args.seed,
        progress=bars,
        report=not args.no_report,
        protocol=args.protocol,
        mqtt_url=args.mqtt_url,
    )
    print(
        f"replayed {args.days:g} day(s) of {scenario.name} from {scenario.local_start:%Y-%m-%d %H:%M},"
        f" cycle {args.cycle:g} s{' over Modbus TCP and MQTT' if args.protocol else ' in process'}"
    )
    print(format_table(result, args.strategies))
    report = "" if args.no_report else f", report in {args.out}/report.html"
    print(f"wall time {time.perf_counter() - started:.1f} s; results in {args.out}/kpis.json{report}")
    return 0
