"""Problems small enough to solve by hand; the optimizer must find exactly these answers."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.inputs import DeferrableInput, DrEvent, InterruptibleInput, PvInput, SolverSettings
from optimizer.persistent import optimize
from tests.optimizer.builders import battery, inputs
from tests.optimizer.checks import violations

LOAD = [40.0] * 8
TWO_PRICES = [0.3] * 4 + [1.0] * 4


def test_battery_shifts_to_the_cheap_hours() -> None:
    # 80 kWh usable, 50 kW: charge 80 kWh in the 0.3 hours, cover 80 of the 160 kWh at 1.0.
    plan = optimize(inputs(LOAD, TWO_PRICES, batteries=[battery()]))
    assert plan.status == "optimal" and not plan.fallback
    assert plan.objective.cost_cny == pytest.approx(4 * 40 * 0.3 + 80 * 0.3 + (160 - 80) * 1.0, abs=1e-6)
    p = np.array(plan.batteries[0].p_kw)
    assert p[:4].sum() == pytest.approx(-80) and p[4:].sum() == pytest.approx(80)
    assert plan.batteries[0].soc_pct[3] == pytest.approx(90) and plan.batteries[0].soc_pct[-1] == pytest.approx(10)
    assert violations(plan) == []


def test_battery_losses_and_degradation() -> None:
    # eta 0.9 each way: charging 80/0.9 kWh stores 80, which delivers 72. Degradation 0.1/kWh discharged.
    plan = optimize(inputs(LOAD, TWO_PRICES, batteries=[battery(eta_charge=0.9, eta_discharge=0.9,
                                                                degradation_cny_per_kwh=0.1)]))  # fmt: skip
    expected = 4 * 40 * 0.3 + 80 / 0.9 * 0.3 + (160 - 72) * 1.0 + 72 * 0.1
    assert plan.objective.cost_cny == pytest.approx(expected, abs=1e-6)
    assert plan.objective.degradation_cny == pytest.approx(7.2, abs=1e-6)
    assert violations(plan) == []


def test_no_arbitrage_when_the_spread_does_not_pay() -> None:
    # Round trip 0.81 at 0.9 x 0.9: buying at 0.3 and saving 1.0 x 0.81 pays; at 0.9 vs 1.0 it does not.
    plan = optimize(inputs(LOAD, [0.9] * 4 + [1.0] * 4, batteries=[battery(eta_charge=0.9, eta_discharge=0.9)]))
    assert np.allclose(plan.batteries[0].p_kw, 0, atol=1e-6)
    assert plan.objective.cost_cny == pytest.approx(4 * 40 * 0.9 + 4 * 40 * 1.0, abs=1e-6)


def test_green_first_beats_a_better_paying_export() -> None:
    # Hour 0: 100 kW of PV, no load, export pays 0.5. Hour 1: 50 kW load, import costs 0.3.
    # Cost first would export all PV (+50) and import later (-15): cost -35, green 0.
    # Green first stores all PV (green 100 kWh) and pays nothing.
    plan = optimize(inputs(
        [0.0, 50.0], [0.3, 0.3], export_price=0.5, export_cap=100.0,
        pv=[PvInput(id="pv", available_kw=[100.0, 0.0])],
        batteries=[battery(capacity_kwh=100, p_charge_max_kw=100, p_discharge_max_kw=100, soc_min_pct=0,
                           soc_max_pct=100, soc_init_pct=0, soc_terminal_pct=0)],
    ))  # fmt: skip
    assert plan.objective.green_kwh == pytest.approx(100, abs=1e-4)
    assert plan.grid_export_kw[0] == pytest.approx(0, abs=1e-4)
    assert plan.objective.cost_cny == pytest.approx(0, abs=1e-4)
    assert plan.objective.cost_cny > -35 + 1
    assert violations(plan) == []


def test_zero_export_curtails_what_cannot_be_used() -> None:
    plan = optimize(inputs([30.0, 30.0], [0.5, 0.5], pv=[PvInput(id="pv", available_kw=[100.0, 10.0])]))
    assert plan.pv[0].limit_kw == pytest.approx([30.0, 10.0], abs=1e-6)
    assert plan.objective.curtailed_kwh == pytest.approx(70, abs=1e-6)
    assert plan.grid_import_kw == pytest.approx([0.0, 20.0], abs=1e-6)


def test_shed_in_the_expensive_hour() -> None:
    # 100 kW load, shed costs 0.5/kWh, import 2.0 in hour 2 and 0.2 elsewhere: shed exactly hour 2.
    # Rebound 0.4 x 100 kWh spread over the next hour (R = 1) at 0.2.
    load = InterruptibleInput(id="chiller", running_kw=100, max_shed_s=3600, max_sheds_per_day=1,
                              rebound_factor=0.4, rebound_s=3600, shed_cost_cny_per_kwh=0.5)  # fmt: skip
    plan = optimize(inputs([0.0] * 4, [0.2, 0.2, 2.0, 0.2], interruptible_loads=[load]))
    assert plan.loads[0].on == [True, True, False, True]
    assert plan.loads[0].p_kw == pytest.approx([100, 100, 0, 140])
    assert plan.objective.cost_cny == pytest.approx(0.2 * 100 * 2 + 0.2 * 140 + 0.5 * 100, abs=1e-6)
    assert violations(plan) == []


def test_deferrable_load_with_minimum_run_and_power() -> None:
    # 10 kWh in steps 0..3, 5..10 kW, 2 h minimum run: best is 5 kW in steps 1 and 2 (0.2 + 0.5).
    dl = DeferrableInput(id="batch", energy_kwh=10, p_min_kw=5, p_max_kw=10, min_run_s=7200, window_start=0,
                         window_end=4)  # fmt: skip
    plan = optimize(inputs([0.0] * 4, [1.0, 0.2, 0.5, 0.3], deferrable_loads=[dl]))
    assert plan.loads[0].p_kw == pytest.approx([0, 5, 5, 0], abs=1e-6)
    assert plan.objective.cost_cny == pytest.approx(3.5, abs=1e-6)
    assert violations(plan) == []


def test_demand_charge_only_on_the_increase_of_the_month_peak() -> None:
    # Month peak so far 50 kW at 10 CNY/kW: a 60 kW step costs 100 more; the battery shaves it.
    plan = optimize(inputs([40.0, 60.0], [1.0, 1.0], demand_charge_cny_per_kw=10.0, month_peak_so_far_kw=50.0,
                           batteries=[battery(soc_init_pct=50, soc_terminal_pct=40)]))  # fmt: skip
    assert plan.objective.peak_import_kw == pytest.approx(50, abs=1e-6)
    assert plan.objective.demand_cny == pytest.approx(0, abs=1e-6)
    assert plan.objective.cost_cny == pytest.approx(90, abs=1e-6)  # 100 kWh of load less 10 kWh from storage


def test_dr_reduction_is_met_when_cheaper_than_the_penalty() -> None:
    # 40 kW base + a 60 kW furnace; baseline 100 kW, commitment 30 kW over hours 1-2: import there may be
    # 140 kWh, not 200. One 1-h shed (60 kWh at 1 CNY/kWh) meets it; the penalty would be 3 CNY/kWh.
    load = InterruptibleInput(id="furnace", running_kw=60, max_shed_s=3600, max_sheds_per_day=1,
                              shed_cost_cny_per_kwh=1.0)  # fmt: skip
    event = DrEvent(id="dr", kind="reduction", first_step=1, end_step=3, penalty_cny_per_kwh=3.0,
                    committed_kw=30.0, baseline_kw=[100.0, 100.0])  # fmt: skip
    plan = optimize(inputs([40.0] * 4, [0.5] * 4, interruptible_loads=[load], dr_events=[event]))
    assert sum(not on for on in plan.loads[0].on[1:3]) == 1 and all(plan.loads[0].on[::3])
    assert plan.objective.dr_penalty_cny == pytest.approx(0, abs=1e-6)
    assert plan.objective.cost_cny == pytest.approx((400 - 60) * 0.5 + 60 * 1.0, abs=1e-6)
    assert violations(plan) == []


def test_a_tie_never_cycles_the_battery_or_exports_above_the_cap() -> None:
    # Found by the property test: no load, no PV, zero export, a battery with losses and no degradation.
    # Within the green tolerance, burning energy by charging and discharging at once is free; the
    # default tie-break cost removes it, and post-processing never turns it into export.
    bat = battery(capacity_kwh=20, p_charge_max_kw=10, p_discharge_max_kw=10, eta_discharge=0.875,
                  soc_min_pct=0, soc_max_pct=80, soc_init_pct=1, soc_terminal_pct=0)  # fmt: skip
    for tiebreak in (1e-5, 0.0):
        settings = SolverSettings(green_rel_tol=0.0, green_abs_tol_kwh=1e-3, battery_tiebreak_cny_per_kwh=tiebreak)
        plan = optimize(inputs([0.0] * 7, [1.0] * 7, step_s=900, batteries=[bat], settings=settings))
        assert plan.grid_export_kw == [0.0] * 7
        assert violations(plan) == []
