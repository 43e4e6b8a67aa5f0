"""Rolling re-plans without branch and bound: sequential fixing, the MIP search budget, HiGHS's two clocks."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from optimizer import solve
from optimizer.inputs import InterruptibleInput, OptimizerInputs, SolverSettings
from optimizer.persistent import RollingOptimizer, optimize
from tests.optimizer.builders import battery, inputs
from tests.optimizer.checks import violations


def _park(settings: SolverSettings, seed: int = 3) -> OptimizerInputs:
    rng = np.random.default_rng(seed)
    loads = [InterruptibleInput(id=f"il{i}", running_kw=float(rng.uniform(20, 60)), max_shed_s=3 * 900,
                                min_shed_s=900, min_gap_s=1800, max_sheds_per_day=3, rebound_factor=0.3,
                                shed_cost_cny_per_kwh=float(rng.uniform(0.05, 0.3))) for i in range(2)]  # fmt: skip
    load = (150 + 60 * rng.random(24)).tolist()
    price = [0.3] * 8 + [1.2] * 8 + [0.8] * 8
    return inputs(load, price, step_s=900, interruptible_loads=loads, batteries=[battery(capacity_kwh=200.0)],
                  demand_charge_cny_per_kw=30.0, settings=settings)  # fmt: skip


def test_no_search_uses_the_heuristic_incumbent_and_keeps_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    real = solve.run_stage
    mip_runs: list[float] = []

    def counted(*args: object, **kw: object) -> solve.StageResult:
        if kw.get("mip"):
            mip_runs.append(1.0)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(solve, "run_stage", counted)
    quick = optimize(_park(SolverSettings(time_limit_s=20, mip_rel_gap=1e-6, mip_search_s=0.0)))
    assert mip_runs == []  # the heuristic misses a gap of 1e-6 (status below), and still no branch and bound
    assert quick.status == "time_limit" and not quick.fallback and quick.mip_gap is not None
    assert violations(quick) == []
    monkeypatch.setattr(solve, "run_stage", real)
    exact = optimize(_park(SolverSettings(time_limit_s=60, mip_rel_gap=1e-6)))
    assert exact.status == "optimal"
    # the incumbent is no better than the optimum, and its reported gap bounds how much worse it is
    cost_q, cost_e = quick.objective.cost_cny, exact.objective.cost_cny
    assert cost_e <= cost_q + 1e-6 * abs(cost_e)
    assert cost_q - cost_e <= quick.mip_gap * abs(cost_q) + 1e-6 * abs(cost_q)


def test_a_rolling_re_solve_considers_the_previous_plan() -> None:
    opt = RollingOptimizer()
    settings = SolverSettings(time_limit_s=20, mip_rel_gap=1e-6, mip_search_s=0.0)
    first = opt.solve(_park(settings))
    again = opt.solve(_park(settings))  # same horizon: the previous plan is a candidate as it stands
    assert not again.fallback and violations(again) == []
    assert again.objective.cost_cny <= first.objective.cost_cny + 1e-6 * abs(first.objective.cost_cny)


def test_mip_time_limit_is_per_run_and_lp_time_limit_is_cumulative() -> None:
    """HiGHS 1.16: a MIP measures time_limit from its own start, an LP against the instance's run time."""
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    h.addVars(2, np.array([0.0, 0.0]), np.array([inf, inf]))
    h.changeColsCost(2, np.array([0, 1], dtype=np.int32), np.array([1.0, 1.0]))
    h.addRow(1.0, inf, 2, np.array([0, 1], dtype=np.int32), np.array([1.0, 1.0]))
    solve.run_stage(h, 5.0, 0.0)
    used = h.getRunTime()
    solve.run_stage(h, 5.0, 0.0, mip=True)
    assert _option(h, "time_limit") == pytest.approx(5.0)
    solve.run_stage(h, 5.0, 0.0)
    assert _option(h, "time_limit") >= used + 5.0


def _option(h: highspy.Highs, name: str) -> float:
    got = h.getOptionValue(name)  # (status, value) in highspy 1.16
    return float(got[1] if isinstance(got, tuple) else got)
