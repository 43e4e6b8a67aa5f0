"""The park facade: time handling, states and commands, energy balance, KPIs and the minute rows."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parkctl.clock import Clock
from sim.park import Park
from sim.scenario import Scenario, load_scenario
from sim.weather import realised_profiles
from tests.sim.test_weather import variant

SUMMER = load_scenario("chenzhou-summer-weekday")
T0 = SUMMER.local_start


class FakeClock:
    """Only what the park uses: ``now()``, set by the test."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


def make(scenario: Scenario = SUMMER) -> tuple[Park, FakeClock]:
    clock = FakeClock(scenario.local_start)
    return Park(scenario, cast(Clock, clock)), clock


def at(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def balance_ok(k: dict[str, float]) -> bool:
    return abs(k["energy_balance_error_kwh"]) <= 1e-6 * max(1.0, k["load_kwh"])


# -- ids, time ---------------------------------------------------------------------------------------
def test_ids_come_from_the_scenario() -> None:
    park, _ = make()
    assert park.pv_ids == tuple(p.id for p in SUMMER.pv)
    assert park.battery_ids == tuple(b.id for b in SUMMER.batteries)
    assert park.load_ids == tuple(ld.id for ld in SUMMER.interruptible_loads)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.pv_state("nope"),
        lambda p: p.battery_state("nope"),
        lambda p: p.load_state("nope"),
        lambda p: p.set_pv_limit("nope", 50.0),
        lambda p: p.set_battery_power("nope", 10.0),
        lambda p: p.request_shed("nope"),
        lambda p: p.request_restore("nope"),
    ],
)
def test_unknown_ids_raise_a_value_error_naming_the_id(call: Any) -> None:
    park, _ = make()
    with pytest.raises(ValueError, match="'nope'"):
        call(park)


def test_states_sync_to_the_clock() -> None:
    park, clock = make()
    clock.t = at(10.5)
    state = park.pv_state(SUMMER.pv[0].id)
    assert state.ts == at(10.5) and park.now == at(10.5)
    assert state.p_kw > 0 and state.energy_kwh > 0
    assert park.meter_state().ts == at(10.5)


def test_advance_to_is_idempotent_for_earlier_times() -> None:
    park, _ = make()
    park.advance_to(at(2))
    before = park.kpis()
    park.advance_to(at(1))
    park.advance_to(at(2))
    assert park.kpis() == before and park.now == at(2)
    with pytest.raises(ValueError, match="timezone"):
        park.advance_to(datetime(2026, 7, 15, 3))


def test_a_clock_months_away_is_refused() -> None:
    park, _ = make()
    with pytest.raises(ValueError, match="scenario start"):
        park.advance_to(at(24 * 40))


def test_advancing_in_pieces_equals_one_go() -> None:
    one, _ = make()
    one.advance_to(at(3))
    pieces, _ = make()
    t = T0
    for s in [0.3, 0.7, 1.5, 59.25, 3600.0, 0.001, 7000.0]:
        t += timedelta(seconds=s)
        pieces.advance_to(t)
    pieces.advance_to(at(3))
    a, b = one.kpis(), pieces.kpis()
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-9), key
    assert len(one.timeseries()) == len(pieces.timeseries()) == 180


def test_the_park_runs_past_midnight_into_a_second_day() -> None:
    park, _ = make()
    park.advance_to(at(36.5))
    k = park.kpis()
    assert k["hours"] == pytest.approx(36.5)
    assert park.pv_state(SUMMER.pv[0].id).p_kw > 0  # 12:30 on day two
    assert balance_ok(k)


# -- states and commands -----------------------------------------------------------------------------
def test_the_meter_is_the_sum_of_everything_else() -> None:
    park, _ = make()
    bid = SUMMER.batteries[0].id
    park.advance_to(at(11))
    park.set_battery_power(bid, 800.0)
    park.advance_to(at(11) + timedelta(seconds=30))
    prof = realised_profiles(SUMMER, 1, 1.0, start=at(11))
    base = prof.base_load_kw[29]  # the step 11:00:29-11:00:30
    pv = sum(park.pv_state(i).p_kw for i in park.pv_ids)
    loads = sum(park.load_state(i).p_kw for i in park.load_ids)
    bat = sum(park.battery_state(i).p_kw for i in park.battery_ids)
    assert bat == pytest.approx(800.0)
    meter = park.meter_state()
    assert meter.p_kw == pytest.approx(base + loads - pv - bat, rel=1e-12)
    assert meter.frequency_hz == 50.0
    assert 9.9e3 < meter.voltage_v < 10.1e3


def test_commands_apply_from_the_clock_instant() -> None:
    park, clock = make()
    bid = SUMMER.batteries[0].id
    clock.t = at(1) + timedelta(seconds=0.5)
    park.set_battery_power(bid, 400.0)
    clock.t = at(1) + timedelta(seconds=2.5)
    state = park.battery_state(bid)
    assert state.setpoint_kw == 400.0 and state.p_kw == 400.0
    ramp = SUMMER.batteries[0].ramp_kw_per_s  # 500 kW/s: 250 kW over the first half second
    assert ramp == 500.0
    assert state.discharge_kwh == pytest.approx((250.0 * 0.5 + 400.0 * 1.5) / 3600.0, rel=1e-9)


def test_the_battery_watchdog_acts_through_the_park() -> None:
    park, clock = make()
    bid = SUMMER.batteries[1].id
    clock.t = at(1)
    park.set_battery_power(bid, -500.0)
    clock.t = at(1) + timedelta(seconds=SUMMER.batteries[1].watchdog_s - 1)
    assert park.battery_state(bid).p_kw == -500.0
    clock.t = at(1) + timedelta(seconds=SUMMER.batteries[1].watchdog_s + 2)
    state = park.battery_state(bid)
    assert state.watchdog_tripped and state.p_kw == 0.0 and state.setpoint_kw == 0.0


def test_pv_limit_through_the_park() -> None:
    park, clock = make()
    plant = SUMMER.pv[0]
    clock.t = at(12)
    park.set_pv_limit(plant.id, 10.0)
    clock.t = at(12) + timedelta(seconds=30)
    state = park.pv_state(plant.id)
    assert state.limit_enabled and state.limit_pct == 10.0
    assert state.p_kw == pytest.approx(0.1 * plant.ac_kw) and state.available_kw > state.p_kw
    park.set_pv_limit(plant.id, None)
    clock.t = at(12) + timedelta(seconds=60)
    state = park.pv_state(plant.id)
    assert not state.limit_enabled and state.limit_pct == 100.0 and state.p_kw == state.available_kw
    assert park.kpis()["pv_curtailed_kwh"] > 0


def test_sheds_through_the_park() -> None:
    park, clock = make()
    lid = SUMMER.interruptible_loads[0].id
    clock.t = at(18)
    assert park.request_shed(lid).accepted
    clock.t = at(18) + timedelta(seconds=60)
    state = park.load_state(lid)
    assert not state.running and state.p_kw == 0.0 and state.shed_since == at(18) and state.sheds_today == 1
    refused = park.request_restore(lid)
    assert not refused.accepted and "min_off_s" in refused.reason
    clock.t = at(19)
    assert park.request_restore(lid).accepted
    clock.t = at(19) + timedelta(seconds=10)
    state = park.load_state(lid)
    assert state.running and state.shed_since is None and state.p_kw > SUMMER.interruptible_loads[0].p_kw
    assert park.kpis()["load_shed_kwh"] > 0


# -- KPIs --------------------------------------------------------------------------------------------
def quiet_import_only() -> Scenario:
    """No PV, no batteries, no interruptible loads, a flat noiseless base load."""
    return variant(pv=[], batteries=[], interruptible_loads=[], base_load__shifts=[], base_load__noise_pct=0.0,
                   base_load__night_level=0.5, base_load__ramp_min=0.0)  # fmt: skip


def test_cost_co2_and_demand_charge_by_hand() -> None:
    sc = quiet_import_only()
    park, _ = make(sc)
    park.advance_to(at(24))
    k = park.kpis()
    kw = 0.5 * sc.base_load.peak_kw
    assert k["grid_import_kwh"] == pytest.approx(24 * kw)
    hours_by_kind = {"flat": 8, "valley": 8, "peak": 4, "critical_peak": 4}  # July windows
    price = {kind: sc.tariff.flat_cny_per_kwh * sc.tariff.ratios[kind] for kind in hours_by_kind}  # type: ignore[index]
    assert k["energy_cost_cny"] == pytest.approx(sum(kw * h * price[p] for p, h in hours_by_kind.items()))
    assert k["co2_kg"] == pytest.approx(24 * kw * sc.grid.carbon_kg_per_kwh)
    assert k["peak_import_kw"] == pytest.approx(kw) and k["peak_import_instant_kw"] == pytest.approx(kw)
    assert k["demand_charge_cny"] == pytest.approx(kw * sc.tariff.demand_charge_cny_per_kw_month)
    assert k["self_sufficiency"] == pytest.approx(0.0, abs=1e-12)
    assert k["green_utilization"] == 0.0 and k["soc_min_pct"] == 0.0


def test_peak_import_is_the_largest_quarter_hour_mean() -> None:
    park, clock = make()
    bid = SUMMER.batteries[0].id
    for minute in range(0, 600, 1):  # a battery that charges hard for a few minutes around 09:00
        clock.t = at(8.5) + timedelta(minutes=minute)
        park.set_battery_power(bid, -2000.0 if 25 <= minute < 35 else 0.0)
    park.advance_to(at(24))
    k = park.kpis()
    grid = np.array([r["grid_kw"] for r in park.timeseries()])
    quarter = grid.reshape(-1, 15).mean(axis=1)
    assert k["peak_import_kw"] == pytest.approx(max(quarter.max(), 0.0), rel=1e-4)
    assert k["peak_import_instant_kw"] >= k["peak_import_kw"]
    assert k["peak_import_instant_kw"] >= np.max(grid) - 1e-3


def test_export_is_charged_to_pv_and_counted_as_a_violation() -> None:
    sc = variant(base_load__peak_kw=500.0, interruptible_loads=[], batteries=[])
    park, _ = make(sc)
    park.advance_to(at(24))
    k = park.kpis()
    assert k["grid_export_kwh"] > 1000
    assert k["export_limit_violation_s"] > 3600
    assert k["green_utilization"] == pytest.approx(
        (k["pv_generated_kwh"] - k["grid_export_kwh"]) / k["pv_available_kwh"], rel=1e-9
    )
    allowed = variant(sc, grid__export_cap_kw=1e5)
    park2, _ = make(allowed)
    park2.advance_to(at(24))
    assert park2.kpis()["export_limit_violation_s"] == 0.0


def test_import_above_the_cap_is_a_violation() -> None:
    park, _ = make(variant(grid__import_cap_kw=1000.0))
    park.advance_to(at(2))
    assert park.kpis()["import_limit_violation_s"] == pytest.approx(7200.0)


def test_timeseries_rows_are_minute_means_in_local_time() -> None:
    park, _ = make()
    park.advance_to(at(6))
    rows, k = park.timeseries(), park.kpis()
    assert len(rows) == 360
    park.advance_to(at(6) + timedelta(seconds=30))  # half a minute is not a row yet
    assert len(park.timeseries()) == 360
    first, last = rows[0], rows[-1]
    assert first["ts"] == "2026-07-15T00:00:00+08:00" and last["ts"] == "2026-07-15T05:59:00+08:00"
    for col in ["pv_available_kw", "pv_kw", "base_load_kw", "interruptible_kw", "load_kw", "battery_kw",
                "grid_kw", "soc_pct", "price_cny_per_kwh", "period"]:  # fmt: skip
        assert col in first
    for pid in park.pv_ids:
        assert f"pv_{pid}_kw" in first
    for bid in park.battery_ids:
        assert f"bess_{bid}_kw" in first and f"bess_{bid}_soc_pct" in first
    for lid in park.load_ids:
        assert f"load_{lid}_kw" in first
    assert first["period"] == "flat" and rows[90]["period"] == "valley"
    grid_kwh = sum(float(r["grid_kw"]) for r in rows) / 60.0
    assert grid_kwh == pytest.approx(k["grid_import_kwh"] - k["grid_export_kwh"], rel=1e-6)
    for r in rows:
        assert float(r["load_kw"]) == pytest.approx(float(r["base_load_kw"]) + float(r["interruptible_kw"]), abs=2e-3)


def test_same_seed_same_day_other_seed_other_day() -> None:
    results = []
    for sc in (SUMMER, SUMMER, variant(seed=SUMMER.seed + 1)):
        park, clock = make(sc)
        clock.t = at(9)
        park.set_battery_power(SUMMER.batteries[0].id, -1000.0, revert_s=7200.0)
        park.request_shed(SUMMER.interruptible_loads[0].id)
        park.advance_to(at(14))
        results.append((park.kpis(), park.timeseries()))
    assert results[0] == results[1]
    assert results[0][0] != results[2][0]


# -- the energy balance under random commands ------------------------------------------------------------
action = st.one_of(
    st.tuples(st.just("bess"), st.integers(0, 1), st.floats(-3000.0, 3000.0), st.one_of(st.none(), st.floats(1, 900))),
    st.tuples(st.just("pv"), st.integers(0, 3), st.one_of(st.none(), st.floats(0.0, 100.0)), st.none()),
    st.tuples(st.just("shed"), st.integers(0, 3), st.none(), st.none()),
    st.tuples(st.just("restore"), st.integers(0, 3), st.none(), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0.001, 1800.0), action), min_size=1, max_size=12),
       st.floats(0.0, 20.0))  # fmt: skip
def test_energy_balance_closes_and_soc_stays_in_bounds(steps: list[tuple[float, tuple]], start_h: float) -> None:
    park, clock = make()
    clock.t = at(start_h)
    for delay, (kind, idx, value, revert) in steps:
        clock.t += timedelta(seconds=delay)
        if kind == "bess":
            park.set_battery_power(park.battery_ids[idx], value, revert)
        elif kind == "pv":
            park.set_pv_limit(park.pv_ids[idx], value)
        elif kind == "shed":
            park.request_shed(park.load_ids[idx])
        else:
            park.request_restore(park.load_ids[idx])
        for bid, cfg in zip(park.battery_ids, SUMMER.batteries, strict=True):
            soc = park.battery_state(bid).soc_pct
            assert cfg.soc_min_pct <= soc <= cfg.soc_max_pct
    park.advance_to(clock.t + timedelta(minutes=5))
    k = park.kpis()
    assert balance_ok(k)
    assert k["pv_generated_kwh"] <= k["pv_available_kwh"] * (1 + 1e-12)
    assert min(b.soc_min_pct for b in SUMMER.batteries) <= k["soc_min_pct"] <= k["soc_max_pct"]
    assert k["soc_max_pct"] <= max(b.soc_max_pct for b in SUMMER.batteries)
    assert math.isfinite(k["energy_cost_cny"])
