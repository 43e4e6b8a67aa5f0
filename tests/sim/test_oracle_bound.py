"""The oracle is not beaten on the reference day, and no strategy beats the perfect-foresight bound.

The comparison is the park's bill over the day (energy, shed cost, battery wear and the day's share of
the monthly demand charge on its highest 15-minute import): what ``savings_captured`` is made of and what the planner
minimises. The oracle is the production planner given the realised day and run through the real-time
layer, so on another day it could lose to mpc by execution noise; the bound of :mod:`sim.bound` is a
relaxation of the physics, so nothing that keeps the grid limits may ever cost less than it.
"""

from __future__ import annotations

import asyncio

import pytest

from sim.bound import bill, bound_bill, month_share
from sim.replay import StrategyRun, run_strategy
from sim.scenario import Scenario, load_scenario

STRATEGIES = ("none", "rules", "mpc", "oracle")


@pytest.fixture(scope="module")
def day() -> tuple[Scenario, dict[str, StrategyRun]]:
    sc = load_scenario("chenzhou-summer-weekday")
    return sc, {s: asyncio.run(run_strategy(sc, s, 24.0)) for s in STRATEGIES}


@pytest.mark.slow
def test_no_strategy_runs_the_day_cheaper_than_the_oracle(day: tuple[Scenario, dict[str, StrategyRun]]) -> None:
    sc, by = day
    cost = {s: bill(r.total, month_share(sc, 24.0)) for s, r in by.items()}
    grey = {s: r.total["grid_import_kwh"] for s, r in by.items()}
    assert all(cost["oracle"] <= cost[s] for s in STRATEGIES), cost
    assert all(grey["oracle"] <= grey[s] for s in ("none", "rules")), grey
    # mpc may import a few kWh less by paying more for them (the planner minimises cost, not import)
    assert grey["oracle"] <= grey["mpc"] * 1.005, grey


@pytest.mark.slow
def test_every_strategy_costs_at_least_the_bound(day: tuple[Scenario, dict[str, StrategyRun]]) -> None:
    sc, by = day
    bound = bound_bill(sc, 24.0)
    bills = {s: bill(r.total, month_share(sc, 24.0)) for s, r in by.items()}
    assert all(b >= bound for b in bills.values()), (bound, bills)


@pytest.mark.slow
def test_planned_strategies_keep_the_grid_limits(day: tuple[Scenario, dict[str, StrategyRun]]) -> None:
    _, by = day
    for s in ("rules", "mpc", "oracle"):
        k = by[s].total
        assert k["import_limit_violation_s"] == 0 and k["export_limit_violation_s"] == 0, s
    for s in ("mpc", "oracle"):
        assert by[s].plans.statuses and by[s].plans.fallbacks == 0, s
