"""RollingOptimizer: re-solving in place gives what a cold solve gives, and rebuilds only when it must."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from optimizer.inputs import BatteryInput, InterruptibleInput, OptimizerInputs, PvInput
from optimizer.persistent import RollingOptimizer, optimize
from tests.optimizer.builders import battery, inputs


def _day(shift: int, soc: float, with_loads: bool) -> OptimizerInputs:
    rng = np.random.default_rng(shift)
    n = 24
    hour = (np.arange(n) + shift) % 24
    price = np.where((hour >= 16) & (hour < 22), 1.1, np.where(hour < 7, 0.3, 0.65))
    sun = np.clip(np.sin(np.pi * (hour - 6) / 13), 0, None)
    extra = {}
    if with_loads:
        extra["interruptible_loads"] = [InterruptibleInput(id="il", running_kw=20, max_shed_s=7200, min_gap_s=3600,
                                                           max_sheds_per_day=2, rebound_factor=0.3,
                                                           shed_cost_cny_per_kwh=0.4)]  # fmt: skip
    inp = inputs((60 + 10 * rng.random(n)).tolist(), price.tolist(), batteries=[battery(soc_init_pct=soc)],
                 pv=[PvInput(id="pv", available_kw=(90 * sun * (0.8 + 0.2 * rng.random(n))).tolist())],
                 demand_charge_cny_per_kw=3.0, month_peak_so_far_kw=55.0, **extra)  # fmt: skip
    return inp.model_copy(update={"start": inp.start + timedelta(hours=shift)})


@pytest.mark.parametrize("with_loads", [False, True], ids=["lp", "mip"])
def test_re_solve_equals_cold_solve(with_loads: bool) -> None:
    ro = RollingOptimizer()
    first = ro.solve(_day(0, 30.0, with_loads))
    assert first.timings.rebuilt
    for shift, soc in [(1, 35.0), (2, 20.0), (3, 60.0)]:
        inp = _day(shift, soc, with_loads)
        warm, cold = ro.solve(inp), optimize(inp)
        assert not warm.timings.rebuilt and cold.timings.rebuilt
        assert warm.status == cold.status == "optimal"
        assert warm.objective.green_kwh == pytest.approx(cold.objective.green_kwh, abs=1e-4)
        assert warm.objective.cost_cny == pytest.approx(cold.objective.cost_cny, abs=1e-4)
    assert ro.builds == 1


def test_crossing_midnight_keeps_the_structure() -> None:
    ro = RollingOptimizer()
    ro.solve(_day(20, 30.0, True))
    plan = ro.solve(_day(21, 30.0, True))  # the horizon now spans three local days' slots
    assert not plan.timings.rebuilt


def test_a_different_device_rebuilds() -> None:
    ro = RollingOptimizer()
    base = _day(0, 30.0, False)
    ro.solve(base)
    other = base.model_copy(update={"batteries": [BatteryInput(**{**battery().model_dump(), "eta_charge": 0.9})]})
    assert ro.solve(other).timings.rebuilt and ro.builds == 2


def test_many_re_solves_do_not_exhaust_the_time_limit() -> None:
    """HiGHS's run clock accumulates over every run of one instance; each re-solve needs its own budget."""
    import math

    from optimizer.inputs import SolverSettings
    from optimizer.persistent import RollingOptimizer
    from tests.optimizer.builders import battery, inputs

    n, budget = 96, 0.05
    opt = RollingOptimizer()
    statuses, used, k = [], 0.0, 0
    while used < 4 * budget:  # the solves together use several budgets
        load = [500 + 300 * math.sin((i + 7 * k) / 8) for i in range(n)]
        price = [0.3 if (i + k) % 24 < 8 else 1.2 for i in range(n)]
        problem = inputs(load, price, step_s=900, settings=SolverSettings(time_limit_s=budget),
                         batteries=[battery(capacity_kwh=2000, p_charge_max_kw=500, p_discharge_max_kw=500)])
        plan = opt.solve(problem)
        used += plan.timings.solve_s
        statuses.append((plan.status, plan.fallback))
        k += 1
    assert all(s == ("optimal", False) for s in statuses), statuses
