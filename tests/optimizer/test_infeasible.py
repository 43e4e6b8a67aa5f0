"""Infeasible inputs: the constraint family is named and a safe rule-based plan comes back as fallback."""

from __future__ import annotations

from optimizer.inputs import DeferrableInput, PvInput
from optimizer.persistent import optimize
from tests.optimizer.builders import battery, inputs
from tests.optimizer.checks import violations


def test_import_cap_too_low_names_the_steps() -> None:
    plan = optimize(inputs([50.0, 120.0, 50.0], [0.5] * 3, import_cap=100.0))
    assert plan.status == "infeasible" and plan.fallback
    assert list(plan.diagnosis) == ["import_cap"]
    assert plan.diagnosis["import_cap"][0].startswith("step 1: 20.0 kW")
    assert "fallback" in plan.message and "import above the cap" in plan.message
    assert plan.grid_import_kw == [50.0, 120.0, 50.0]  # the fallback does not hide the excess
    assert violations(plan) == []  # balance, SoC and load rules hold; caps are reported, not met


def test_battery_covers_what_it_can_before_the_cap_is_named() -> None:
    bat = battery(soc_init_pct=30, soc_terminal_pct=10)  # 20 kWh above the floor, 50 kW
    plan = optimize(inputs([100.0, 150.0], [0.5] * 2, import_cap=100.0, batteries=[bat]))  # no spare import
    assert plan.status == "infeasible"
    assert plan.diagnosis["import_cap"] == ["step 1: 30.0 kW of load above what import cap 100.0 kW, PV and "
                                            "storage cover"]  # fmt: skip


def test_unreachable_terminal_soc_is_named() -> None:
    bat = battery(soc_init_pct=10, soc_terminal_pct=90, p_charge_max_kw=10)  # needs 80 kWh, can take 20
    plan = optimize(inputs([0.0, 0.0], [0.5] * 2, batteries=[bat]))
    assert plan.status == "infeasible" and plan.fallback
    assert plan.diagnosis == {"battery_terminal_soc": ["bess: 60.0 kWh short of soc_terminal_pct 90.0"]}
    assert violations(plan) == []


def test_deferrable_energy_that_cannot_fit_its_window_is_named() -> None:
    dl = DeferrableInput(id="ev", energy_kwh=50, p_max_kw=10, window_start=1, window_end=3)
    plan = optimize(inputs([0.0] * 4, [0.5] * 4, deferrable_loads=[dl]))
    assert plan.status == "infeasible"
    assert plan.diagnosis == {"deferrable_energy": ["ev: 30.0 of 50.0 kWh cannot be delivered in steps [1, 3)"]}
    assert plan.loads[0].p_kw == [0.0, 10.0, 10.0, 0.0]  # fallback: as early as allowed, within its limits


def test_fallback_is_greedy_self_consumption() -> None:
    # Infeasible because of the cap at step 3; the fallback charges from the PV surplus, discharges later.
    bat = battery(soc_init_pct=10, soc_terminal_pct=10)
    plan = optimize(inputs([20.0, 20.0, 60.0, 200.0], [0.5] * 4, import_cap=100.0, batteries=[bat],
                           pv=[PvInput(id="pv", available_kw=[100.0, 30.0, 0.0, 0.0])]))  # fmt: skip
    assert plan.fallback
    assert plan.batteries[0].p_kw == [-50.0, -10.0, 50.0, 10.0]  # 80 kWh usable, 50 kW each way
    assert plan.pv[0].limit_kw == [70.0, 30.0, 0.0, 0.0]  # zero export: curtail the rest
    assert violations(plan) == []
