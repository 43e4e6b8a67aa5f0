"""The ``parkctl sweep`` command line; the sweep's imports are deferred so ``parkctl --help`` stays fast."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parkctl.argtypes import bounded_float
from sim.replay_cli import _strategies

if TYPE_CHECKING:
    from sim.sweep import PointResult
    from sim.sweep_grid import Point


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are a comma list of integers, not {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("seeds are a comma list of integers")
    return seeds


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"workers must be a whole number of at least 1, not {text!r}")
    return int(text)


def add_sweep_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep", help="replay a scenario over a grid of parameter values (and seeds), in parallel",
        description="Replay a scenario for every combination of --param values and --seeds; write "
        "OUT/sweep.csv (a row per point and strategy), OUT/sweep.png and each point's files under OUT/points/.",
    )  # fmt: skip
    p.add_argument("--scenario", default="chenzhou-summer-weekday", help="shipped name or a YAML path")
    p.add_argument("--days", type=bounded_float("days", 0, 14), default=1.0)
    p.add_argument("--param", action="append", default=[], metavar="PATH=V1,V2,...",
                   help="a scenario field and its values, e.g. battery.capacity_kwh=2000,4000 (a path through a "
                   "list sets every element; batteries.0.capacity_kwh sets one); repeat for a grid")  # fmt: skip
    p.add_argument("--strategies", type=_strategies, default=["rules", "mpc"], help="comma list (default: rules,mpc)")
    p.add_argument("--seeds", type=_seeds, default=None, help="comma list of seeds (default: the scenario's)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, default=None, help="local processes (default: CPU count)")
    where.add_argument("--ray", metavar="ADDRESS", default=None, help="run points as tasks on this Ray cluster")
    p.add_argument("--cycle", type=float, default=60.0, help="control cycle in s (default 60)")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _progress(total: int) -> Any:
    done = 0

    def report(point: Point, result: PointResult) -> None:
        nonlocal done
        done += 1
        what = " ".join(f"{k}={v}" for k, v in point.params.items()) or "base"
        if result.error is not None:
            outcome = f"FAILED: {result.error}"
        else:
            outcome = ", ".join(f"{s} {t['operating_cost_cny']:.0f} CNY" for s, t in result.totals.items())
            outcome += f" ({sum(result.wall_s.values()):.1f} s)"
        print(f"[{done}/{total}] point {point.index} {what} seed={point.seed}: {outcome}", flush=True)

    return report


def cmd_sweep(args: argparse.Namespace) -> int:
    from sim.scenario import load_scenario
    from sim.sweep import sweep
    from sim.sweep_exec import Executor, LocalExecutor, RayExecutor
    from sim.sweep_grid import expand_grid, parse_param

    params = [parse_param(text) for text in args.param]
    points = expand_grid(load_scenario(args.scenario), params, args.seeds)  # validated before anything runs
    executor: Executor
    if args.ray:
        executor, where = RayExecutor(args.ray), f"Ray cluster {args.ray}"
    else:
        executor = local = LocalExecutor(args.workers)
        where = f"{min(local.workers, len(points))} local process(es)"
    print(
        f"sweep: {len(points)} point(s) x strategies {','.join(args.strategies)},"
        f" {args.days:g} day(s) each, cycle {args.cycle:g} s, on {where} (cpu count {os.cpu_count()})",
        flush=True,
    )
    result = sweep(points, args.days, args.strategies, args.out, executor, args.cycle, _progress(len(points)))
    print(
        f"wall time {result.wall_s:.1f} s; {result.failed} of {len(points)} point(s) failed; wrote "
        + ", ".join(str(f) for f in result.files)
    )
    return 1 if result.failed else 0
