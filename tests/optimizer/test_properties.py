"""Random small parks: every plan is feasible, and green-first then cost-optimal by an independent solve.

The independent solve goes through Pyomo's own HiGHS interface (``pyomo.contrib.solver``) on the Pyomo
model, not through the standard-form route and the numpy data vectors the optimizer uses.
"""

from __future__ import annotations

import pyomo.environ as pyo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyomo.contrib.solver.solvers.highs import Highs as PyomoHighs

from optimizer.data import derive
from optimizer.inputs import (
    BatteryInput,
    DeferrableInput,
    DrEvent,
    InterruptibleInput,
    OptimizerInputs,
    PvInput,
    SolverSettings,
)
from optimizer.model import build_model
from optimizer.persistent import optimize
from tests.optimizer.builders import START
from tests.optimizer.checks import violations

SETTINGS = SolverSettings(time_limit_s=30, mip_rel_gap=1e-7, green_rel_tol=0.0, green_abs_tol_kwh=1e-3)
money = st.floats(0.1, 1.5)


@st.composite
def parks(draw: st.DrawFn) -> OptimizerInputs:
    n = draw(st.integers(4, 10))
    step = draw(st.sampled_from([900, 3600]))
    dt = step / 3600
    load = draw(st.lists(st.floats(0, 150), min_size=n, max_size=n))
    price = draw(st.lists(money, min_size=n, max_size=n))
    pv = [PvInput(id=f"pv{k}", available_kw=draw(st.lists(st.floats(0, 200), min_size=n, max_size=n)))
          for k in range(draw(st.integers(0, 2)))]  # fmt: skip
    bats = []
    for k in range(draw(st.integers(0, 2))):
        lo, hi = draw(st.floats(0, 20)), draw(st.floats(80, 100))
        init = draw(st.floats(lo, hi))
        bats.append(BatteryInput(
            id=f"b{k}", capacity_kwh=draw(st.floats(20, 200)), p_charge_max_kw=draw(st.floats(10, 100)),
            p_discharge_max_kw=draw(st.floats(10, 100)), eta_charge=draw(st.floats(0.85, 1)),
            eta_discharge=draw(st.floats(0.85, 1)), soc_min_pct=lo, soc_max_pct=hi, soc_init_pct=init,
            soc_terminal_pct=draw(st.floats(0, init)), degradation_cny_per_kwh=draw(st.floats(0, 0.2)),
        ))  # fmt: skip
    ints = [InterruptibleInput(
        id=f"il{k}", running_kw=draw(st.floats(5, 60)), max_shed_s=step * draw(st.integers(1, 3)),
        min_shed_s=step * draw(st.integers(0, 1)), min_gap_s=step * draw(st.integers(0, 2)),
        max_sheds_per_day=draw(st.integers(0, 3)), rebound_factor=draw(st.floats(0, 0.6)),
        rebound_s=step * draw(st.integers(1, 2)), shed_cost_cny_per_kwh=draw(st.floats(0, 2)),
    ) for k in range(draw(st.integers(0, 2)))]  # fmt: skip
    defs = []
    for k in range(draw(st.integers(0, 1))):
        p_max = draw(st.floats(5, 50))
        run = draw(st.integers(0, 2))
        first = draw(st.integers(0, n - max(run, 1) - 1))
        end = draw(st.integers(first + max(run, 1) + 1, n))
        defs.append(DeferrableInput(
            id=f"dl{k}", energy_kwh=p_max * dt * (end - first) * draw(st.floats(0.35, 0.9)),
            p_min_kw=p_max * draw(st.sampled_from([0.0, 0.3])), p_max_kw=p_max, min_run_s=run * step,
            window_start=first, window_end=end,
        ))  # fmt: skip
    events = []
    if n >= 4 and draw(st.booleans()):
        events.append(DrEvent(id="dr", kind="reduction", first_step=1, end_step=3, penalty_cny_per_kwh=2.0,
                              committed_kw=draw(st.floats(0, 30)), baseline_kw=load[1:3]))  # fmt: skip
    if draw(st.booleans()):
        events.append(DrEvent(id="cap", kind="import_cap", first_step=0, end_step=2, penalty_cny_per_kwh=1.0,
                              cap_kw=draw(st.floats(0, 150))))  # fmt: skip
    demand = draw(st.sampled_from([0.0, 5.0, 30.0]))
    return OptimizerInputs(
        start=START, step_s=step, n_steps=n, base_load_kw=load, import_price_cny_per_kwh=price,
        export_price_cny_per_kwh=draw(st.lists(st.floats(0, 0.8), min_size=n, max_size=n)),
        import_cap_kw=[2000.0] * n, export_cap_kw=[draw(st.sampled_from([0.0, 50.0]))] * n,
        carbon_kg_per_kwh=[0.5366] * n, demand_charge_cny_per_kw=demand,
        month_peak_so_far_kw=draw(st.floats(0, 100)), pv=pv, batteries=bats, interruptible_loads=ints,
        deferrable_loads=defs, dr_events=events, settings=SETTINGS,
    )  # fmt: skip


def _solve(m: pyo.ConcreteModel) -> bool:
    """Solve with Pyomo's HiGHS interface; True when optimal (solution loaded)."""
    res = PyomoHighs().solve(m, solver_options={"mip_rel_gap": 1e-9}, raise_exception_on_nonoptimal_result=False,
                             load_solutions=False)  # fmt: skip
    if str(res.termination_condition.name) != "convergenceCriteriaSatisfied":
        return False
    res.solution_loader.load_vars()
    return True


def _independent(inp: OptimizerInputs) -> tuple[float, float]:
    """(green floor, least cost under it) as optimizer/README.md defines them, via Pyomo's HiGHS interface."""
    d = derive(inp)
    tol = inp.settings.green_abs_tol_kwh
    relaxed = build_model(d)
    pyo.TransformationFactory("core.relax_integer_vars").apply_to(relaxed)
    assert _solve(relaxed)
    floor = pyo.value(relaxed.obj_green) - tol
    m = build_model(d, green_floor=floor)
    m.obj_green.deactivate()
    m.obj_cost.activate()
    if not _solve(m):  # on/off rules keep green below the LP bound: the green MIP (with tie-break) sets it
        g = build_model(d)
        g.obj_green.deactivate()
        g.tie = pyo.Objective(expr=-g.obj_green.expr + inp.settings.green_tiebreak_kwh_per_cny * g.obj_cost.expr)
        assert _solve(g)
        floor = pyo.value(g.obj_green) - tol
        m = build_model(d, green_floor=floor)
        m.obj_green.deactivate()
        m.obj_cost.activate()
        assert _solve(m)
    return floor, pyo.value(m.obj_cost)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parks())
def test_random_plans_are_feasible_and_lexicographic(inp: OptimizerInputs) -> None:
    plan = optimize(inp)
    assert plan.status == "optimal" and not plan.fallback, plan.message
    assert violations(plan) == []
    floor, cost = _independent(inp)
    assert plan.green_floor_kwh == pytest.approx(floor, abs=1e-5)
    assert plan.objective.green_kwh >= floor - 1e-6  # green first, within the tolerance
    assert plan.objective.cost_cny == pytest.approx(cost, rel=1e-5, abs=1e-3)  # then the cheapest such plan
