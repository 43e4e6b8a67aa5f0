"""The oracle is the bound: over a replayed day no strategy runs the park cheaper than perfect foresight.

The comparison is the replay's own: ``operating_cost_cny`` (energy + shed cost + battery wear) and grid
import over a whole day, the figures ``savings_captured`` and ``grey_import_captured`` are made of. The
planner also weighs the month's demand charge and keeps the batteries' charge at the end of its 24-h
horizon, so on shorter windows, or on a bill that adds the window's peak, the realised figures of two
plans differ by execution noise (a plan kept at its peak with no margin, a 60-s cycle, loads that restore
themselves with a rebound): measured on 6-h windows, the oracle's realised peak came out 190 kW above
mpc's one night. The day's energy figures are what the strategies are judged on, and there the oracle
must win.
"""

from __future__ import annotations

import asyncio

import pytest

from sim.replay import StrategyRun, operating_cost, run_strategy
from sim.scenario import Scenario, load_scenario

STRATEGIES = ("none", "rules", "mpc", "oracle")


@pytest.fixture(scope="module")
def day() -> tuple[Scenario, dict[str, StrategyRun]]:
    sc = load_scenario("chenzhou-summer-weekday")
    return sc, {s: asyncio.run(run_strategy(sc, s, 24.0)) for s in STRATEGIES}


@pytest.mark.slow
def test_no_strategy_runs_the_day_cheaper_than_the_oracle(day: tuple[Scenario, dict[str, StrategyRun]]) -> None:
    _, by = day
    cost = {s: operating_cost(r.total) for s, r in by.items()}
    grey = {s: r.total["grid_import_kwh"] for s, r in by.items()}
    assert all(cost["oracle"] <= cost[s] for s in STRATEGIES), cost
    assert all(grey["oracle"] <= grey[s] for s in ("none", "rules")), grey
    # mpc may import a few kWh less by paying more for them (the planner minimises cost, not import)
    assert grey["oracle"] <= grey["mpc"] * 1.005, grey


@pytest.mark.slow
def test_planned_strategies_keep_the_grid_limits(day: tuple[Scenario, dict[str, StrategyRun]]) -> None:
    _, by = day
    for s in ("rules", "mpc", "oracle"):
        k = by[s].total
        assert k["import_limit_violation_s"] == 0 and k["export_limit_violation_s"] == 0, s
    for s in ("mpc", "oracle"):
        assert by[s].plans.statuses and by[s].plans.fallbacks == 0, s
