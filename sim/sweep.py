"""Parameter sweeps of replays: the same :func:`sim.replay.replay` over a grid of scenarios.

The grid (:mod:`sim.sweep_grid`) is validated before anything runs. Each point replays the chosen
strategies into ``out/points/<index>/`` through an :class:`~sim.sweep_exec.Executor` (local processes
or Ray tasks: the same :func:`run_point` either way). The table has one row per point × strategy in
grid order whatever order points finish in; a point that fails has its error in the ``error`` column
and the sweep goes on. Files: ``sweep.csv``, ``sweep.parquet`` (when pyarrow is importable) and
``sweep.png`` (:mod:`sim.sweep_output`).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.scenario import Scenario
from sim.sweep_exec import Executor
from sim.sweep_grid import Point

SHARED = ("savings_captured", "grey_import_captured", "bound_bill_cny")  # per point, not per strategy


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to replay one point; picklable, so it can cross to a process or a node."""

    index: int
    scenario: Scenario
    days: float
    strategies: tuple[str, ...]
    out_dir: Path
    cycle_s: float


@dataclass
class PointResult:
    index: int
    totals: dict[str, dict[str, float]] = field(default_factory=dict)  # strategy -> total KPIs
    shared: dict[str, float | None] = field(default_factory=dict)  # savings_captured, grey_import_captured
    wall_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())  # one line, whatever the exception carries


def run_point(task: PointTask) -> PointResult:
    """Replay one point; any failure becomes the result's ``error`` (traceback in ``error.txt``), not an exception."""
    from sim.replay import replay

    try:
        # no per-point HTML report: seconds of plotting per point; the sweep draws its own figure
        result = replay(task.scenario, task.days, task.strategies, task.out_dir, cycle_s=task.cycle_s, report=False)
    except Exception as exc:
        with contextlib.suppress(OSError):  # the traceback, for whoever debugs it; the folder may be the fault
            task.out_dir.mkdir(parents=True, exist_ok=True)
            (task.out_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return PointResult(task.index, error=describe_error(exc))
    totals = {s: dict(result[s]["total"]) for s in task.strategies}
    return PointResult(task.index, totals, {k: result[k] for k in SHARED}, dict(result["wall_s"]))


def point_dir(out_dir: Path, index: int) -> Path:
    return out_dir / "points" / str(index)


def run_points(
    points: Sequence[Point], days: float, strategies: Sequence[str], out_dir: Path, executor: Executor,
    cycle_s: float = 60.0, on_result: Callable[[Point, PointResult], None] | None = None,
) -> list[PointResult]:  # fmt: skip
    """Run every point on ``executor``; results in grid order, one per point, failures included."""
    tasks = [PointTask(p.index, p.scenario, days, tuple(strategies), point_dir(out_dir, p.index), cycle_s)
             for p in points]  # fmt: skip
    results: dict[int, PointResult] = {}
    for pos, outcome in executor.run(run_point, tasks):
        if isinstance(outcome, BaseException):  # the worker itself died or the task was lost
            outcome = PointResult(tasks[pos].index, error=describe_error(outcome))
        results[pos] = outcome
        if on_result is not None:
            on_result(points[pos], outcome)
    missing = [i for i in range(len(tasks)) if i not in results]
    for i in missing:  # an executor that lost track of a task: say so rather than drop the row
        results[i] = PointResult(tasks[i].index, error="no result came back from the executor")
    return [results[i] for i in range(len(tasks))]


def table(points: Sequence[Point], results: Sequence[PointResult], strategies: Sequence[str]) -> list[dict[str, Any]]:
    """One row per point × strategy: index, params, seed, strategy, total KPIs, shared KPIs, wall, error."""
    kpis = sorted({k for r in results for t in r.totals.values() for k in t})
    rows = []
    for point, res in zip(points, results, strict=True):
        for s in strategies:
            row: dict[str, Any] = {"point": point.index, **point.params, "seed": point.seed, "strategy": s}
            total = res.totals.get(s, {})
            row.update({k: total.get(k) for k in kpis})
            row.update({k: res.shared.get(k) for k in SHARED})
            row["wall_s"] = res.wall_s.get(s)
            row["error"] = res.error
            rows.append(row)
    return rows


@dataclass
class SweepResult:
    points: list[Point]
    results: list[PointResult]
    rows: list[dict[str, Any]]
    files: list[Path]
    wall_s: float

    @property
    def failed(self) -> int:
        return sum(r.error is not None for r in self.results)


def sweep(
    points: Sequence[Point], days: float, strategies: Sequence[str], out_dir: Path, executor: Executor,
    cycle_s: float = 60.0, on_result: Callable[[Point, PointResult], None] | None = None,
) -> SweepResult:  # fmt: skip
    """Run the grid and write ``sweep.csv`` (+ ``sweep.parquet``, ``sweep.png`` when possible) to ``out_dir``."""
    from sim.sweep_output import write_outputs

    started = time.perf_counter()
    results = run_points(points, days, strategies, out_dir, executor, cycle_s, on_result)
    rows = table(points, results, strategies)
    first = next(iter(points[0].params), None) if points else None
    files = write_outputs(rows, out_dir, first, list(strategies))
    return SweepResult(list(points), results, rows, files, time.perf_counter() - started)
