"""Lexicographic solve on a live HiGHS instance: green first, then cost, within one wall-clock deadline.

Definition (reproducible from plan.json): let ``G_LP`` be the largest green of the linear relaxation and
``tol = max(green_abs_tol_kwh, green_rel_tol * PV available kWh)``. The plan minimises cost subject to
``green >= G_LP - tol`` (the ``green_floor`` row). For an LP, ``G_LP`` is the green optimum, so this is
the lexicographic optimum with tolerance ``tol``. For a MIP the floor is at least as high as
``G_MIP - tol``; only if on/off rules keep green more than ``tol`` below ``G_LP`` (the stage-2 MIP finds
nothing) is the floor lowered to ``G1 - tol`` with ``G1`` from a stage-1 MIP, and the message says so.

Why two stages and not one weighted objective: the marginal cost of the last kWh of green is large and
data dependent (2,300 CNY/kWh on the bench park), so a weight that is provably lexicographic would sit
many orders of magnitude above the prices, past what solver tolerances keep exact. Why a tolerance: that
same steep margin means the last 0.1 % of green can cost more than a percent of the day's bill; set
``green_rel_tol = 0`` for the strict order.

Numerics: green alone is a massively degenerate objective (dual simplex stalls on it), so every green
solve uses ``-green + EPS*cost`` first and then, for the bound, re-solves ``-green`` from that basis.

Time: the stage-2 MIP gets the remaining time (60 % of it when a stage-1 MIP may still be needed). A stage
stopped by the time limit with an incumbent gives status ``time_limit`` and that incumbent; without one
the status is ``no_solution`` and the caller falls back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from optimizer.inputs import SolverSettings
from optimizer.lp import Layout, Vectors

MS = highspy.HighsModelStatus
_STOPPED = {MS.kTimeLimit, MS.kInterrupt, MS.kSolutionLimit, MS.kIterationLimit, MS.kObjectiveBound,
            MS.kObjectiveTarget, MS.kHighsInterrupt}  # type: ignore[attr-defined]  # fmt: skip
_INFEASIBLE = {MS.kInfeasible, MS.kUnboundedOrInfeasible}
EPS = 1e-4  # kWh of green per CNY of cost: tie-break that keeps green solves non-degenerate
Start = tuple[np.ndarray, np.ndarray]  # (column indices, values): a full or partial MIP start


@dataclass
class StageResult:
    status: str  # optimal | time_limit | infeasible | no_solution | error
    x: np.ndarray | None
    mip_gap: float
    seconds: float
    model_status: str


@dataclass
class LexResult:
    status: str  # optimal | time_limit | infeasible | no_solution | error
    x: np.ndarray | None
    green_kwh: float
    green_floor_kwh: float
    green_gap: float  # (G_LP - green of the plan) / G_LP
    mip_gap: float  # stage-2 (cost) MIP gap
    solve_s: float
    message: str


def full_start(x: np.ndarray) -> Start:
    return np.arange(len(x), dtype=np.int32), np.asarray(x, dtype=float)


def run_stage(h: highspy.Highs, time_limit_s: float, gap: float, start: Start | None = None) -> StageResult:
    """One HiGHS run with a time limit; classifies the outcome.

    A partial start (integer columns only) is completed by HiGHS with an LP over the other columns.
    """
    h.setOptionValue("time_limit", float(max(time_limit_s, 0.05)))
    h.setOptionValue("mip_rel_gap", float(gap))
    if start is not None:
        h.setSolution(len(start[0]), start[0].astype(np.int32), start[1].astype(float))
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    ms = h.getModelStatus()
    info = h.getInfo()
    x = np.array(h.getSolution().col_value) if info.primal_solution_status == 2 else None  # feasible
    if ms == MS.kOptimal and x is not None:
        status = "optimal"
    elif ms in _STOPPED:
        status = "time_limit" if x is not None else "no_solution"
    elif ms in _INFEASIBLE:
        status = "infeasible"
    else:
        status = "error"
    gap_now = float(info.mip_gap) if np.isfinite(info.mip_gap) else float("inf")
    return StageResult(status, x, max(gap_now, 0.0) if x is not None else float("inf"), seconds, ms.name)


def green_tolerance(v: Vectors, layout: Layout, settings: SolverSettings) -> float:
    """kWh of green stage 2 may give up: ``max(green_abs_tol_kwh, green_rel_tol * PV available)``."""
    pv = layout.cols["pv"]
    available = float(v.green[pv] @ v.col_upper[pv]) if len(pv) else 0.0
    return max(settings.green_abs_tol_kwh, settings.green_rel_tol * available)


def _objective(h: highspy.Highs, n: int, cost: np.ndarray, offset: float) -> None:
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
    h.changeObjectiveOffset(offset)


def _relax(h: highspy.Highs, layout: Layout, on: bool) -> None:
    ints = np.flatnonzero(layout.integrality).astype(np.int32)
    if len(ints):
        kind = np.zeros(len(ints), dtype=np.uint8) if on else layout.integrality[ints]
        h.changeColsIntegrality(len(ints), ints, kind)


def green_bound(h: highspy.Highs, layout: Layout, v: Vectors, deadline: float) -> tuple[StageResult, float]:
    """The LP relaxation's largest green ``G_LP`` (nan if not proven) and the stage result of the LP."""
    n = layout.n_col
    mip = layout.is_mip()
    if mip:
        _relax(h, layout, True)
    try:
        _objective(h, n, -v.green + EPS * v.cost, 0.0)
        first = run_stage(h, deadline - time.perf_counter(), 0.0)
        if first.x is None:
            return first, float("nan")
        _objective(h, n, -v.green, 0.0)
        pure = run_stage(h, deadline - time.perf_counter(), 0.0)
        if pure.status != "optimal" or pure.x is None:
            return first, float("nan")
        return pure, float(v.green @ pure.x)
    finally:
        if mip:
            _relax(h, layout, False)


def _cost_stage(
    h: highspy.Highs, layout: Layout, v: Vectors, floor: float, time_s: float, gap: float, start: Start | None
) -> StageResult:
    _objective(h, layout.n_col, v.cost, v.cost_offset)
    h.changeRowBounds(int(layout.rows["green_floor"][0]), floor, highspy.kHighsInf)
    return run_stage(h, time_s, gap, start if layout.is_mip() else None)


def solve_lexicographic(
    h: highspy.Highs, layout: Layout, v: Vectors, settings: SolverSettings, deadline: float,
    start: Start | None = None,
) -> LexResult:  # fmt: skip
    """Green bound, then cost under the green floor (see the module docstring); ``start`` seeds the MIP."""
    t0 = time.perf_counter()
    row = int(layout.rows["green_floor"][0])
    h.changeRowBounds(row, -highspy.kHighsInf, highspy.kHighsInf)
    tol = green_tolerance(v, layout, settings)
    lp, g_lp = green_bound(h, layout, v, deadline)
    if lp.x is None or not np.isfinite(g_lp):
        status = lp.status if lp.status in ("infeasible", "no_solution") else "error"
        return LexResult(status, None, float("nan"), float("nan"), float("inf"), float("inf"),
                         time.perf_counter() - t0, f"green bound (LP relaxation): {lp.model_status}")  # fmt: skip
    mip = layout.is_mip()
    floor = g_lp - tol
    left = deadline - time.perf_counter()
    s2 = _cost_stage(h, layout, v, floor, left * (0.6 if mip else 1.0), settings.mip_rel_gap, start)
    msg = f"green bound {g_lp:.3f} kWh (tol {tol:.3f}); cost stage {s2.model_status} in {s2.seconds:.3f} s"
    if mip and s2.x is None and s2.status in ("infeasible", "no_solution"):
        # On/off rules keep green more than tol below the LP bound: find the MIP's own green first.
        h.changeRowBounds(row, -highspy.kHighsInf, highspy.kHighsInf)
        _objective(h, layout.n_col, -v.green + EPS * v.cost, 0.0)
        s1 = run_stage(h, 0.5 * (deadline - time.perf_counter()), settings.mip_rel_gap, start)
        msg += f"; green MIP {s1.model_status} in {s1.seconds:.3f} s"
        if s1.x is None:
            return LexResult(s1.status, None, float("nan"), float("nan"), float("inf"), float("inf"),
                             time.perf_counter() - t0, msg)  # fmt: skip
        floor = float(v.green @ s1.x) - tol
        s2 = _cost_stage(h, layout, v, floor, deadline - time.perf_counter(), settings.mip_rel_gap,
                         full_start(s1.x))  # fmt: skip
        msg += f", floor lowered to {floor:.3f} kWh; cost stage {s2.model_status} in {s2.seconds:.3f} s"
        if s2.x is None:
            s2 = StageResult("time_limit", s1.x, float("inf"), s2.seconds, s2.model_status)
            msg += ": green-stage plan used, cost not optimised"
    if s2.x is None:
        return LexResult(s2.status, None, float("nan"), floor, float("inf"), float("inf"),
                         time.perf_counter() - t0, msg)  # fmt: skip
    g = float(v.green @ s2.x)
    return LexResult(s2.status, s2.x, g, floor, max(0.0, g_lp - g) / max(1.0, abs(g_lp)),
                     s2.mip_gap if mip else 0.0, time.perf_counter() - t0, msg)  # fmt: skip
