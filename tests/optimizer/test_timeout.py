"""The wall-clock limit: an incumbent is used and said so; without one the plan falls back."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import solve
from optimizer.inputs import InterruptibleInput, SolverSettings
from optimizer.persistent import optimize
from tests.optimizer.builders import battery, inputs
from tests.optimizer.checks import violations


def _mip() -> object:
    load = InterruptibleInput(id="il", running_kw=30, max_shed_s=3600, max_sheds_per_day=2, shed_cost_cny_per_kwh=0.1)
    return inputs([40.0] * 6, [0.3, 0.3, 1.5, 1.5, 0.3, 0.3], interruptible_loads=[load], batteries=[battery()])


def test_incumbent_at_the_time_limit_is_used_and_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    real = solve.run_stage
    calls: list[int] = []

    def stopped(*args: object, **kw: object) -> solve.StageResult:
        calls.append(1)
        r = real(*args, **kw)  # type: ignore[arg-type]
        if len(calls) > 2 and r.x is not None:  # after the LP bound, the MIP "runs out of time" with its incumbent
            return solve.StageResult("time_limit", r.x, 0.02, r.seconds, "kTimeLimit")
        return r

    monkeypatch.setattr(solve, "run_stage", stopped)
    plan = optimize(_mip())  # type: ignore[arg-type]
    assert plan.status == "time_limit" and not plan.fallback
    assert plan.mip_gap == pytest.approx(0.02)
    assert violations(plan) == []


def test_no_incumbent_at_the_time_limit_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = solve.run_stage
    calls: list[int] = []

    def nothing(*args: object, **kw: object) -> solve.StageResult:
        calls.append(1)
        if len(calls) <= 2:  # the LP relaxation solves; the MIP stages find nothing in time
            return real(*args, **kw)  # type: ignore[arg-type]
        return solve.StageResult("no_solution", None, float("inf"), 0.0, "kTimeLimit")

    monkeypatch.setattr(solve, "run_stage", nothing)
    plan = optimize(_mip())  # type: ignore[arg-type]
    assert plan.status == "no_solution" and plan.fallback
    assert "time limit reached without a solution" in plan.message
    assert violations(plan) == []


def test_a_real_short_limit_returns_a_usable_plan() -> None:
    rng = np.random.default_rng(1)
    loads = [InterruptibleInput(id=f"il{i}", running_kw=float(rng.uniform(20, 60)), max_shed_s=3600,
                                min_gap_s=1800, max_sheds_per_day=3, rebound_factor=0.3,
                                shed_cost_cny_per_kwh=float(rng.uniform(0.5, 2))) for i in range(15)]  # fmt: skip
    price = [0.3] * 32 + [1.5] * 32 + [0.6] * 32
    inp = inputs((300 + 50 * rng.random(96)).tolist(), price, step_s=900, interruptible_loads=loads,
                 demand_charge_cny_per_kw=30.0, month_peak_so_far_kw=250.0,
                 settings=SolverSettings(time_limit_s=0.3, mip_rel_gap=0.0))  # fmt: skip
    plan = optimize(inp)
    assert plan.status in ("optimal", "time_limit", "no_solution")
    assert plan.timings.total_s < 2.0
    assert violations(plan) == []
