"""How long simulated days take in process with the planner in the loop, and what mpc captures.

Target (issue 6): one day of the summer scenario with MPC re-planning every 15 min (96 re-plans) under
15 s wall; on a week, mpc captures >= 90 % of the oracle's savings. Runs :func:`sim.replay.replay`
(production Runtime + Planner, SimForecaster, 60-s control cycle, as-fast-as-possible SimClock) and prints
per strategy: wall time, re-plans, solve-time p50/p95/max, operating cost, import, limit violations;
then savings_captured and grey_import_captured. The machine is shared: the load average is printed
before and after, and the figures move with it.

    python bench/replay_bench.py [--days 1] [--strategies none,rules,mpc,oracle] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.replay import replay
from sim.scenario import load_scenario

TARGET_DAY_S = 15.0


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--scenario", default="chenzhou-summer-weekday")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--cycle", type=float, default=60.0)
    ap.add_argument("--strategies", default="none,rules,mpc,oracle")
    ap.add_argument("--out", type=Path, default=None, help="keep kpis.json and time series here")
    args = ap.parse_args()
    strategies = [s for s in args.strategies.split(",") if s]
    scenario = load_scenario(args.scenario)
    print(
        f"replay bench: {args.scenario}, {args.days:g} day(s) from {scenario.local_start:%Y-%m-%d %H:%M},"
        f" cycle {args.cycle:g} s, planner re-plans every 900 s (24 h horizon, 15-min steps)"
    )
    print(f"  python {platform.python_version()} on {platform.machine()}; before: {_load()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = replay(scenario, args.days, strategies, args.out or Path(tmp), cycle_s=args.cycle)
    print(
        f"  {'strategy':<8} {'wall s':>7} {'re-plans':>8} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'sum s':>6}"
        f" {'cost CNY':>9} {'import kWh':>10} {'viol imp/exp s':>14} plans"
    )
    for s in strategies:
        solves, run, k = result["solve_s"][s], result[s]["run"], result[s]["total"]
        viol = f"{k['import_limit_violation_s']:.0f}/{k['export_limit_violation_s']:.0f}"
        per_day = result["wall_s"][s] / args.days
        flag = "" if s not in ("mpc", "oracle") else (" ok" if per_day < TARGET_DAY_S else " MISSED")
        print(
            f"  {s:<8} {result['wall_s'][s]:>7.1f} {run['replans']:>8} {_pct(solves, 0.5):>6.2f}"
            f" {_pct(solves, 0.95):>6.2f} {max(solves, default=float('nan')):>6.2f} {sum(solves):>6.1f}"
            f" {k['operating_cost_cny']:>9.0f} {k['grid_import_kwh']:>10.0f} {viol:>14}"
            f" fallback {run['fallback_plans']}{flag} ({per_day:.1f} s/day, target {TARGET_DAY_S:g})"
        )
    for name in ("savings_captured", "grey_import_captured"):
        v = result[name]
        print(f"  {name}: " + ("n/a (needs none, mpc and oracle)" if v is None else f"{v:.1%}"))
    print(f"  total {time.perf_counter() - t0:.0f} s; after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
