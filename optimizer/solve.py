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

Numerics: green alone is a massively degenerate objective (dual simplex stalls on it from scratch), so a
cold green solve uses ``-green + eps*cost`` first (``eps = settings.green_tiebreak_kwh_per_cny``, 1e-4 by default)
and then, for the bound, re-solves ``-green`` from that basis; ``G1`` is the green of the MIP optimum of
``-green + eps*cost``.

Time: the stage-2 MIP gets the remaining time (60 % of it when a stage-1 MIP may still be needed), or at
most ``settings.mip_search_s`` once a heuristic incumbent (rounding, or the previous plan moved on) is in
hand: a rolling re-plan improves on the last plan a step later, it need not close the gap now. A stage
stopped by the time limit with an incumbent gives status ``time_limit`` and that incumbent; without one
the status is ``no_solution`` and the caller falls back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from optimizer.data import ModelData
from optimizer.fixing import fix_sequentially
from optimizer.inputs import SolverSettings
from optimizer.lp import Layout, Vectors
from optimizer.rounding import round_integers

MS = highspy.HighsModelStatus
_STOPPED = {MS.kTimeLimit, MS.kInterrupt, MS.kSolutionLimit, MS.kIterationLimit, MS.kObjectiveBound,
            MS.kObjectiveTarget, MS.kHighsInterrupt}  # type: ignore[attr-defined]  # fmt: skip
_INFEASIBLE = {MS.kInfeasible, MS.kUnboundedOrInfeasible}
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


def run_stage(
    h: highspy.Highs, time_limit_s: float, gap: float, start: Start | None = None, presolve: bool = True,
    mip: bool = False,
) -> StageResult:  # fmt: skip
    """One HiGHS run with a time limit; classifies the outcome. ``mip``: the instance has integer columns now.

    A partial start (integer columns only) is completed by HiGHS with an LP over the other columns.
    LPs run without presolve: on the bench park it cost more than it saved (2.1 s against 1.2 s).
    """
    # HiGHS 1.16 has two clocks: an LP checks time_limit against the instance's run time, which
    # accumulates over every run (a persistent model must add what it has used, or later re-solves time
    # out at once); the MIP solver checks it against its own clock, started at 0 by each run (adding the
    # run time there let a 20 s limit run 36 s in the replay).
    budget = max(time_limit_s, 0.05)
    h.setOptionValue("time_limit", float(budget if mip else h.getRunTime() + budget))
    h.setOptionValue("presolve", "choose" if presolve else "off")
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


Bases = dict[str, highspy.HighsBasis]  # HiGHS bases kept per objective between rolling re-solves


def _from_basis(h: highspy.Highs, bases: Bases | None, key: str) -> None:
    """Start simplex from the basis this objective ended with last time, else from scratch.

    A basis left by the other objective is worse than none: the cost LP warm-started from the green
    optimum took 6x longer than a cold start on the bench park.
    """
    if bases is not None and key in bases and h.setBasis(bases[key]) == highspy.HighsStatus.kOk:
        return
    h.clearSolver()


def _keep_basis(h: highspy.Highs, bases: Bases | None, key: str, result: StageResult) -> None:
    if bases is not None and result.status == "optimal":
        bases[key] = h.getBasis()


def _warm_lp(h: highspy.Highs, bases: Bases | None, key: str, time_s: float) -> StageResult:
    """The LP from this objective's last basis; once more from scratch if that run breaks down.

    A shifted basis HiGHS accepts can still end a run with no status at all (``kNotset`` in 4 ms, once
    in a week of re-plans), which used to send the plan to the fallback."""
    t_end = time.perf_counter() + time_s
    warm = bases is not None and key in bases
    _from_basis(h, bases, key)
    r = run_stage(h, time_s, 0.0, presolve=False)
    if warm and r.x is None and r.status == "error":
        assert bases is not None
        del bases[key]
        h.clearSolver()
        r = run_stage(h, t_end - time.perf_counter(), 0.0, presolve=False)
    _keep_basis(h, bases, key, r)
    return r


def green_bound(
    h: highspy.Highs, layout: Layout, v: Vectors, deadline: float, eps: float, bases: Bases | None = None
) -> tuple[StageResult, float]:
    """The LP relaxation's largest green ``G_LP`` (nan if not proven) and the stage result of the LP."""
    n = layout.n_col
    mip = layout.is_mip()
    if mip:
        _relax(h, layout, True)
    try:
        if bases is not None and "green" in bases:  # re-solve: straight from the last green optimum's basis
            _objective(h, n, -v.green, 0.0)
            _from_basis(h, bases, "green")
            warm = run_stage(h, deadline - time.perf_counter(), 0.0, presolve=False)
            _keep_basis(h, bases, "green", warm)
            if warm.status == "optimal" and warm.x is not None:
                return warm, float(v.green @ warm.x)
        _objective(h, n, -v.green + eps * v.cost, 0.0)
        h.clearSolver()
        first = run_stage(h, deadline - time.perf_counter(), 0.0, presolve=False)
        if first.x is None:
            return first, float("nan")
        _objective(h, n, -v.green, 0.0)
        pure = run_stage(h, deadline - time.perf_counter(), 0.0, presolve=False)
        _keep_basis(h, bases, "green", pure)
        if pure.status != "optimal" or pure.x is None:
            return first, float("nan")
        return pure, float(v.green @ pure.x)
    finally:
        if mip:
            _relax(h, layout, False)


def _cost(v: Vectors, x: np.ndarray | None) -> float:
    return float(v.cost @ x) + v.cost_offset if x is not None else float("inf")


def _fixed(
    h: highspy.Highs, layout: Layout, v: Vectors, idx: np.ndarray, vals: np.ndarray, time_s: float
) -> StageResult:
    """The (relaxed) LP with the columns ``idx`` fixed at ``vals``: an incumbent when feasible."""
    n, cols = layout.n_col, np.arange(layout.n_col, dtype=np.int32)
    lo, hi = v.col_lower.copy(), v.col_upper.copy()
    lo[idx], hi[idx] = vals, vals
    h.changeColsBounds(n, cols, lo, hi)
    try:
        return run_stage(h, time_s, 0.0, presolve=False)
    finally:
        h.changeColsBounds(n, cols, v.col_lower, v.col_upper)


def _cost_stage(
    h: highspy.Highs, layout: Layout, v: Vectors, floor: float, time_s: float, gap: float, start: Start | None,
    d: ModelData | None = None, bases: Bases | None = None, search_s: float | None = None,
) -> tuple[StageResult, str]:  # fmt: skip
    """Least cost with green >= floor. For a MIP: relax; find incumbents with the on/off decisions fixed
    (:mod:`optimizer.fixing`, else the rounding of :mod:`optimizer.rounding`; and ``start`` when it sets
    them all: the previous plan moved on); if the best is within ``gap`` of the relaxation it is the
    answer, otherwise the MIP runs seeded with it, for at most ``search_s`` when that is set (0: none)."""
    _objective(h, layout.n_col, v.cost, v.cost_offset)
    h.changeRowBounds(int(layout.rows["green_floor"][0]), floor, highspy.kHighsInf)
    if not layout.is_mip():
        return _warm_lp(h, bases, "cost", time_s), "LP"
    if d is None:
        return run_stage(h, time_s, gap, start, mip=True), "MIP"
    t0 = time.perf_counter()
    t_end = t0 + time_s
    T = d.n_steps
    best: StageResult | None = None
    best_how, c_lp = "", float("nan")
    _relax(h, layout, True)
    try:
        lp = _warm_lp(h, bases, "cost", time_s)
        if lp.x is None:
            return lp, "relaxation"
        c_lp = _cost(v, lp.x) if lp.status == "optimal" else float("-inf")  # a bound only when proven
        idx = np.concatenate([layout.cols["shed"], layout.cols["dl_on"]]).astype(np.int32)

        def resolve(cols: np.ndarray, vals: np.ndarray) -> np.ndarray | None:
            return _fixed(h, layout, v, cols, vals, t_end - time.perf_counter()).x

        seq = fix_sequentially(d, layout, lp.x, resolve)
        candidates: list[tuple[str, np.ndarray]] = []
        if seq is not None:
            best = StageResult("optimal", seq[1], 0.0, 0.0, "fixing")
            best_how = "sequential fixing"
        else:
            shed, on = round_integers(
                d, lp.x[layout.cols["shed"]].reshape(-1, T), lp.x[layout.cols["dl_on"]].reshape(-1, T)
            )
            vals = np.concatenate([shed.ravel(), on.ravel()])
            known = ~np.isnan(vals)
            if known.all():
                candidates.append(("rounding", vals))
            elif start is None and known.any():
                start = (idx[known], vals[known])
        if start is not None and np.array_equal(start[0], idx):
            candidates.append(("previous plan", np.asarray(start[1], dtype=float)))
        for how, fix in candidates:
            fixed = _fixed(h, layout, v, idx, fix, t_end - time.perf_counter())
            if fixed.x is not None and (best is None or _cost(v, fixed.x) < _cost(v, best.x)):
                best, best_how = fixed, how
        if best is not None and best.x is not None:
            x_r = best.x
            gap_r = max(0.0, _cost(v, x_r) - c_lp) / max(1.0, abs(_cost(v, x_r)))
            best = StageResult("time_limit", x_r, gap_r, best.seconds, best_how)
            if gap_r <= gap:
                return StageResult("optimal", x_r, gap_r, time.perf_counter() - t0, "rounded"), best_how
            start = full_start(x_r)
    finally:
        _relax(h, layout, False)
    left = t_end - time.perf_counter()
    if best is not None and search_s == 0:  # a rolling re-plan: the incumbent is good enough to act on
        return StageResult("time_limit", best.x, best.mip_gap, time.perf_counter() - t0, "heuristic"), best_how
    mip = run_stage(h, min(left, search_s) if best is not None and search_s else left, gap, start, mip=True)
    if best is None or best.x is None:
        return mip, "MIP"
    c_mip, c_best = _cost(v, mip.x), _cost(v, best.x)
    if c_mip <= c_best + 1e-9 * max(1.0, abs(c_best)):  # at least as good: the better of both gap measures
        if mip.status != "optimal":
            mip.mip_gap = min(mip.mip_gap, max(0.0, c_mip - c_lp) / max(1.0, abs(c_mip)))
        return mip, "MIP"
    return best, f"{best_how}; MIP {mip.model_status} in {mip.seconds:.3f} s"


def solve_lexicographic(
    h: highspy.Highs, layout: Layout, v: Vectors, settings: SolverSettings, deadline: float,
    start: Start | None = None, d: ModelData | None = None, bases: Bases | None = None,
) -> LexResult:  # fmt: skip
    """Green bound, then cost under the green floor (see the module docstring); ``start`` seeds the MIP,
    ``d`` (the model data) enables the rounding heuristic."""
    t0 = time.perf_counter()
    row = int(layout.rows["green_floor"][0])
    h.changeRowBounds(row, -highspy.kHighsInf, highspy.kHighsInf)
    tol = green_tolerance(v, layout, settings)
    eps = settings.green_tiebreak_kwh_per_cny
    lp, g_lp = green_bound(h, layout, v, deadline, eps, bases)
    if lp.x is None or not np.isfinite(g_lp):
        status = lp.status if lp.status in ("infeasible", "no_solution") else "error"
        return LexResult(status, None, float("nan"), float("nan"), float("inf"), float("inf"),
                         time.perf_counter() - t0, f"green bound (LP relaxation): {lp.model_status}")  # fmt: skip
    mip = layout.is_mip()
    floor = g_lp - tol
    left = deadline - time.perf_counter()
    search = settings.mip_search_s
    s2, how = _cost_stage(h, layout, v, floor, left * (0.6 if mip else 1.0), settings.mip_rel_gap, start, d, bases,
                          search)  # fmt: skip
    msg = f"green bound {g_lp:.3f} kWh (tol {tol:.3f}); cost stage ({how}) {s2.model_status} in {s2.seconds:.3f} s"
    if mip and s2.x is None and s2.status in ("infeasible", "no_solution"):
        # On/off rules keep green more than tol below the LP bound: find the MIP's own green first.
        h.changeRowBounds(row, -highspy.kHighsInf, highspy.kHighsInf)
        _objective(h, layout.n_col, -v.green + eps * v.cost, 0.0)
        s1 = run_stage(h, 0.5 * (deadline - time.perf_counter()), settings.mip_rel_gap, start, mip=True)
        msg += f"; green MIP {s1.model_status} in {s1.seconds:.3f} s"
        if s1.x is None:
            return LexResult(s1.status, None, float("nan"), float("nan"), float("inf"), float("inf"),
                             time.perf_counter() - t0, msg)  # fmt: skip
        floor = float(v.green @ s1.x) - tol
        s2, how = _cost_stage(h, layout, v, floor, deadline - time.perf_counter(), settings.mip_rel_gap,
                              full_start(s1.x), d, bases, search)  # fmt: skip
        msg += f", floor lowered to {floor:.3f} kWh; cost stage ({how}) {s2.model_status} in {s2.seconds:.3f} s"
        if s2.x is None:
            s2 = StageResult("time_limit", s1.x, float("inf"), s2.seconds, s2.model_status)
            msg += ": green-stage plan used, cost not optimised"
    if s2.x is None:
        return LexResult(s2.status, None, float("nan"), floor, float("inf"), float("inf"),
                         time.perf_counter() - t0, msg)  # fmt: skip
    g = float(v.green @ s2.x)
    return LexResult(s2.status, s2.x, g, floor, max(0.0, g_lp - g) / max(1.0, abs(g_lp)),
                     s2.mip_gap if mip else 0.0, time.perf_counter() - t0, msg)  # fmt: skip
