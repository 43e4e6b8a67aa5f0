"""How much a sweep gains from worker processes: the same grid with 1 worker and with N.

Default grid: battery capacity (both batteries) 1000..8000 kWh in 8 steps × seeds 1..4 = 32 one-day
replays of the summer scenario, strategy ``rules``, 60-s cycle. The fork server (which preloads the
replay stack) is warmed up first so neither run pays its start. Prints the load average around each
run (other jobs on the machine cut the speed-up) and whether both runs gave identical KPIs.

    python bench/sweep_bench.py [--points 32] [--workers N] [--hours 24] [--strategy rules]
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

from sim.scenario import load_scenario
from sim.sweep import sweep
from sim.sweep_exec import LocalExecutor
from sim.sweep_grid import Point, expand_grid, parse_param


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def timed(points: list[Point], hours: float, strategy: str, workers: int) -> tuple[float, list[dict[str, object]]]:
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as out:
        before = load()
        result = sweep(points, hours / 24, [strategy], Path(out), LocalExecutor(workers), cycle_s=60.0)
        busy = sum(sum(r.wall_s.values()) for r in result.results)  # replays' own walls: > wall when overlapped
        print(f"  {workers} worker(s): wall {result.wall_s:6.1f} s, {result.wall_s / len(points):5.2f} s/point,"
              f" replays overlapped {busy / result.wall_s:.2f}x, failed {result.failed};"
              f" load avg 1/5/15 min before {before}, after {load()}", flush=True)  # fmt: skip
        rows = [{k: v for k, v in r.items() if k != "wall_s"} for r in result.rows]
        return result.wall_s, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--scenario", default="chenzhou-summer-weekday")
    ap.add_argument("--points", type=int, default=32, help="run the first P points of the 8 x 4 grid")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--strategy", choices=["none", "rules", "mpc", "oracle"], default="rules")
    args = ap.parse_args()
    base = load_scenario(args.scenario)
    grid = expand_grid(base, [parse_param("batteries.capacity_kwh=" + ",".join(str(1000 * k) for k in range(1, 9)))],
                       seeds=[1, 2, 3, 4])  # fmt: skip
    points = grid[: args.points]
    print(f"sweep bench: {len(points)} point(s) of batteries.capacity_kwh 1000..8000 x seeds 1..4"
          f" on {args.scenario}, {args.hours:g} h each from {base.local_start:%Y-%m-%d %H:%M},"
          f" strategy {args.strategy}, cycle 60 s")  # fmt: skip
    print(f"  python {platform.python_version()}, {os.cpu_count()} cpu(s); load avg now {load()}", flush=True)
    warm = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as out:  # start the fork server outside the timings
        sweep(points[:1], 0.25 / 24, [args.strategy], Path(out), LocalExecutor(1), cycle_s=60.0)
    print(f"  warm-up (fork server start + a 15-min replay): {time.perf_counter() - warm:.1f} s", flush=True)
    one_s, one_rows = timed(points, args.hours, args.strategy, 1)
    many_s, many_rows = timed(points, args.hours, args.strategy, args.workers)
    print(f"  speed-up {one_s / many_s:.2f}x with {args.workers} workers"
          f" (efficiency {one_s / many_s / args.workers:.0%}); KPIs identical: {one_rows == many_rows}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
