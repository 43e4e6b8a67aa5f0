"""How long a full simulated day takes in process with the planner in the loop (target: under 15 s).

One day of the summer scenario, strategy ``mpc`` (production Runtime + Planner, SimForecaster), 60-s
control cycle, re-planned every 15 min (96 periodic re-plans, plus any on a lasting deviation), on an
as-fast-as-possible SimClock. Prints what it ran, wall time, cycles, re-plans and solve-time stats.

    python bench/replay_bench.py [--scenario NAME] [--hours 24] [--cycle 60] [--strategy mpc|oracle]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.replay import run_strategy
from sim.scenario import load_scenario

TARGET_S = 15.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--scenario", default="chenzhou-summer-weekday")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--cycle", type=float, default=60.0)
    ap.add_argument("--strategy", choices=["mpc", "oracle"], default="mpc")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    print(f"replay bench: {args.scenario}, {args.hours:g} h from {scenario.local_start:%Y-%m-%d %H:%M},"
          f" strategy {args.strategy}, cycle {args.cycle:g} s, re-plan every 900 s (24 h horizon, 15-min steps)")
    print(f"  python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu ?'}")
    t0 = time.perf_counter()
    run = asyncio.run(run_strategy(scenario, args.strategy, args.hours, args.cycle))
    wall = time.perf_counter() - t0
    solves = sorted(run.plans.solve_s)
    k = run.total
    print(f"  wall {wall:.1f} s (target < {TARGET_S:g} s: {'ok' if wall < TARGET_S else 'MISSED'});"
          f" {run.cycles} cycles, {len(solves)} re-plans ({run.plans.fallbacks} fallback),"
          f" statuses {sorted(set(run.plans.statuses))}")
    if solves:
        p95 = solves[min(len(solves) - 1, int(0.95 * len(solves)))]
        print(f"  solve s: total {sum(solves):.1f}, mean {statistics.mean(solves):.3f},"
              f" median {statistics.median(solves):.3f}, p95 {p95:.3f}, max {solves[-1]:.3f}")
        print(f"  outside the solver: {wall - sum(solves):.1f} s (physics, cycles, forecasts, inputs)")
    print(f"  day: cost {k['energy_cost_cny']:.0f} CNY, import {k['grid_import_kwh']:.0f} kWh,"
          f" green {k['green_utilization']:.1%}, violations export {k['export_limit_violation_s']:.0f} s"
          f" / import {k['import_limit_violation_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
