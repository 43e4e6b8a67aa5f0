"""Solve entry points: :class:`RollingOptimizer` keeps the model between rolling-horizon re-solves.

The first solve builds the Pyomo model, compiles it and loads HiGHS. Later solves whose inputs have the
same :class:`~optimizer.data.Structure` (same steps, devices and device physics; only forecasts, prices,
caps, initial states, windows change) push the new numbers into the live HiGHS instance and re-solve,
warm: an LP keeps its basis, a MIP gets the previous plan as a starting point. A different structure
rebuilds. ``Plan.timings.rebuilt`` tells which happened.
"""

from __future__ import annotations

import time
from datetime import datetime

import highspy
import numpy as np

from optimizer.data import derive
from optimizer.fallback import fallback_flows
from optimizer.flows import clean, from_solution
from optimizer.infeasibility import diagnose
from optimizer.inputs import OptimizerInputs
from optimizer.lp import INTEGER_FAMILIES, Layout, build_and_compile, new_highs, push_data, vectors
from optimizer.plan import Plan, Timings, make_plan
from optimizer.solve import Start, solve_lexicographic

DIAGNOSIS_LIMIT_S = 10.0


class RollingOptimizer:
    """Re-solves in place while only data change; rebuilds when the structure changes."""

    def __init__(self) -> None:
        self._layout: Layout | None = None
        self._h: highspy.Highs | None = None
        self._last_x: np.ndarray | None = None
        self._last_start: datetime | None = None
        self.builds = 0

    def _rolled_start(self, layout: Layout, inputs: OptimizerInputs) -> Start | None:
        """The previous plan's on/off decisions moved on by the steps the horizon moved (a partial MIP start)."""
        if self._last_x is None or self._last_start is None or not layout.is_mip():
            return None
        moved = (inputs.start - self._last_start).total_seconds() / inputs.step_s
        shift = round(moved)
        T = inputs.n_steps
        if abs(moved - shift) > 1e-6 or not 0 <= shift < T:
            return None
        idx, vals = [], []
        for name in INTEGER_FAMILIES:
            cols = layout.cols[name]
            if not len(cols):
                continue
            old = np.round(self._last_x[cols].reshape(-1, T))
            new = np.concatenate([old[:, shift:], np.repeat(old[:, -1:], shift, axis=1)], axis=1)
            idx.append(cols)
            vals.append(new.ravel())
        return np.concatenate(idx).astype(np.int32), np.concatenate(vals)

    def solve(self, inputs: OptimizerInputs) -> Plan:
        t0 = time.perf_counter()
        deadline = t0 + inputs.settings.time_limit_s
        d = derive(inputs)
        rebuilt = self._layout is None or self._h is None or self._layout.structure != d.structure
        if rebuilt:
            _, layout, build_s, compile_s = build_and_compile(d)
            t1 = time.perf_counter()
            v = vectors(layout, d)
            h = new_highs(layout, v)
            self._layout, self._h, self._last_x, self._last_start = layout, h, None, None
            self.builds += 1
            build_s += t1 - t0 - build_s - compile_s  # derive() and bookkeeping count as build
            load_s = compile_s + time.perf_counter() - t1
        else:
            assert self._layout is not None and self._h is not None
            layout, h = self._layout, self._h
            t1 = time.perf_counter()
            v = vectors(layout, d)
            push_data(h, layout, v)
            build_s, load_s = t1 - t0, time.perf_counter() - t1
        start = None if rebuilt else self._rolled_start(layout, inputs)
        lex = solve_lexicographic(h, layout, v, inputs.settings, deadline, start=start)

        def timings() -> Timings:
            return Timings(build_s=build_s, load_s=load_s, solve_s=lex.solve_s,
                           total_s=time.perf_counter() - t0, rebuilt=rebuilt)  # fmt: skip

        if lex.x is not None and lex.status in ("optimal", "time_limit"):
            self._last_x, self._last_start = lex.x, inputs.start
            flows, notes = clean(from_solution(lex.x, layout, d), d)
            message = "; ".join([lex.message, *notes])
            return make_plan(inputs, d, flows, status=lex.status, fallback=False, message=message,  # type: ignore[arg-type]
                             timings=timings(), mip_gap=lex.mip_gap, green_gap=lex.green_gap,
                             green_floor_kwh=lex.green_floor_kwh)  # fmt: skip
        diagnosis: dict[str, list[str]] = {}
        if lex.status == "infeasible":
            diagnosis = diagnose(h, layout, v, d, inputs, min(DIAGNOSIS_LIMIT_S, inputs.settings.time_limit_s))
        flows, notes = fallback_flows(inputs, d)
        flows, more = clean(flows, d)
        reason = {"infeasible": "inputs infeasible", "no_solution": "time limit reached without a solution"}
        message = "; ".join([f"fallback: {reason.get(lex.status, 'solver error')} ({lex.message})", *notes, *more])
        return make_plan(inputs, d, flows, status=lex.status, fallback=True, message=message,  # type: ignore[arg-type]
                         timings=timings(), diagnosis=diagnosis)  # fmt: skip


def optimize(inputs: OptimizerInputs) -> Plan:
    """One cold solve."""
    return RollingOptimizer().solve(inputs)


def oracle(realised: OptimizerInputs) -> Plan:
    """The same model over realised data (perfect foresight): the bound every controller is measured against."""
    return optimize(realised.model_copy(update={"mode": "oracle"}))
