"""Solve entry points: :class:`RollingOptimizer` keeps the model between rolling-horizon re-solves.

The first solve builds the Pyomo model, compiles it and loads HiGHS. Later solves whose inputs have the
same :class:`~optimizer.data.Structure` (same steps, devices and device physics; only forecasts, prices,
caps, initial states, windows change) push the new numbers into the live HiGHS instance and re-solve,
warm: each objective starts from the simplex basis it ended with last time and the MIP from the last
on/off decisions, both moved on by the steps the horizon moved (:mod:`optimizer.warm`). A different
structure rebuilds. ``Plan.timings.rebuilt`` tells which happened.
"""

from __future__ import annotations

import time
from datetime import datetime

import highspy
import numpy as np
import pyomo.environ as pyo

from optimizer.data import derive
from optimizer.fallback import fallback_flows
from optimizer.flows import clean, from_solution
from optimizer.infeasibility import diagnose
from optimizer.inputs import OptimizerInputs
from optimizer.lp import Layout, build_and_compile, new_highs, push_data, vectors
from optimizer.plan import Plan, Timings, make_plan
from optimizer.solve import Bases, solve_lexicographic
from optimizer.warm import shifted_basis, shifted_start, steps_moved

DIAGNOSIS_LIMIT_S = 10.0


class RollingOptimizer:
    """Re-solves in place while only data change; rebuilds when the structure changes."""

    def __init__(self) -> None:
        self._layout: Layout | None = None
        self._h: highspy.Highs | None = None
        self._last_x: np.ndarray | None = None
        self._last_start: datetime | None = None
        self.model: pyo.ConcreteModel | None = None  # the Pyomo model of the current structure
        self._bases: Bases = {}
        self.builds = 0

    def solve(self, inputs: OptimizerInputs) -> Plan:
        t0 = time.perf_counter()
        deadline = t0 + inputs.settings.time_limit_s
        d = derive(inputs)
        rebuilt = self._layout is None or self._h is None or self._layout.structure != d.structure
        if rebuilt:
            model, layout, build_s, compile_s = build_and_compile(d)
            t1 = time.perf_counter()
            v = vectors(layout, d)
            h = new_highs(layout, v)
            self._layout, self._h, self._last_x, self._last_start = layout, h, None, None
            self._bases = {}
            self.model = model  # kept: it is cyclic garbage (~20 objects per matrix entry) that would
            # otherwise be collected at some later, random moment, e.g. in the middle of a warm re-solve
            self.builds += 1
            build_s = (t1 - t0) - compile_s  # derive() and the Pyomo build
            load_s = compile_s + time.perf_counter() - t1
        else:
            assert self._layout is not None and self._h is not None
            layout, h = self._layout, self._h
            t1 = time.perf_counter()
            v = vectors(layout, d)
            push_data(h, layout, v)
            build_s, load_s = t1 - t0, time.perf_counter() - t1
        start = None
        if not rebuilt:
            k = steps_moved(self._last_start, inputs.start, inputs.step_s, inputs.n_steps)
            if k is None:
                self._bases = {}
            else:
                for key, basis in self._bases.items():
                    self._bases[key] = shifted_basis(basis, layout, inputs.n_steps, k, v.row_lower, v.row_upper)
                if self._last_x is not None and layout.is_mip():
                    start = shifted_start(layout, self._last_x, inputs.n_steps, k)
        lex = solve_lexicographic(h, layout, v, inputs.settings, deadline, start=start, d=d, bases=self._bases)

        def timings() -> Timings:
            return Timings(build_s=build_s, load_s=load_s, solve_s=lex.solve_s,
                           total_s=time.perf_counter() - t0, rebuilt=rebuilt)  # fmt: skip

        self._last_start = inputs.start  # the bases now belong to this horizon
        self._last_x = lex.x if lex.status in ("optimal", "time_limit") else None
        if lex.x is not None and lex.status in ("optimal", "time_limit"):
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
