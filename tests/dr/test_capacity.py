"""Capacity offered in an ack: battery energy over the window capped by power, plus loads shed throughout."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.config import ControllerConfig
from controller.cycle import CycleReport
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from dr.capacity import BatteryOffer, LoadOffer, ParkCapacity, battery_kw, load_kw, offer_kw
from drivers.capabilities import BatteryReading

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 16, 19, 0, tzinfo=TZ)
H = 3600.0


def test_battery_energy_limited_over_a_long_window() -> None:
    # 2000 kWh at 60 %, floor 10 %: 1000 kWh usable; over 2 h that is 500 kW, below the 1000 kW limit
    b = BatteryOffer(soc_pct=60, soc_min_pct=10, capacity_kwh=2000, max_discharge_kw=1000)
    assert battery_kw(b, 2 * H) == pytest.approx(500.0)


def test_battery_power_limited_over_a_short_window() -> None:
    b = BatteryOffer(soc_pct=60, soc_min_pct=10, capacity_kwh=2000, max_discharge_kw=1000)
    assert battery_kw(b, 0.25 * H) == pytest.approx(1000.0)  # 4000 kW of energy rate, capped at 1000


def test_discharge_losses_and_an_empty_battery() -> None:
    b = BatteryOffer(soc_pct=60, soc_min_pct=10, capacity_kwh=2000, max_discharge_kw=1000, eta_discharge=0.9)
    assert battery_kw(b, 2 * H) == pytest.approx(450.0)
    below_floor = BatteryOffer(soc_pct=8, soc_min_pct=10, capacity_kwh=2000, max_discharge_kw=1000)
    assert battery_kw(below_floor, H) == 0.0
    with pytest.raises(ValueError):
        battery_kw(b, 0)


def test_loads_count_only_if_they_may_stay_shed_the_whole_window() -> None:
    assert load_kw(LoadOffer(nominal_kw=300, max_shed_s=2 * H), 2 * H) == 300.0
    assert load_kw(LoadOffer(nominal_kw=300, max_shed_s=H), 2 * H) == 0.0


def test_offer_adds_batteries_and_loads() -> None:
    c = offer_kw(2 * H, [BatteryOffer(60, 10, 2000, 1000), BatteryOffer(30, 10, 1000, 500)],
                 [LoadOffer(300, 3 * H), LoadOffer(200, H)])  # fmt: skip
    assert c.battery_kw == pytest.approx(500 + 100)
    assert c.load_kw == 300.0
    assert c.total_kw == pytest.approx(900.0)


def _config() -> ControllerConfig:
    return ControllerConfig.model_validate({
        "site": {"name": "zixing"}, "grid": {"import_cap_kw": 8000, "export_cap_kw": 0},
        "batteries": {"bat1": {"soc_min_pct": 20}},
        "modbus": [{"id": "meter", "kind": "meter"}, {"id": "bat1", "kind": "storage", "port": 1502}],
        "mqtt": {}, "loads": [{"id": "chiller", "nominal_kw": 400, "max_shed_s": 7200}],
    })  # fmt: skip


def test_park_capacity_uses_the_latest_cycle_and_the_configured_limits() -> None:
    cap = ParkCapacity(_config())
    window = (T0, T0 + timedelta(hours=1))
    assert cap(*window) == 400.0  # no reading yet: the batteries offer nothing
    reading = BatteryReading(ts=T0, p_kw=0, soc_pct=50, capacity_kwh=1000, max_charge_kw=500, max_discharge_kw=500)
    snap = Snapshot(ts=T0, meter=None, batteries={"bat1": reading})
    cap.on_cycle(CycleReport(T0, snap, Setpoints(), (), (), {}, 0.0, False))
    # (50 - 20) % of 1000 kWh = 300 kWh over 1 h = 300 kW (< 500 kW), plus the chiller
    assert cap(*window) == pytest.approx(700.0)
    assert cap(T0, T0 + timedelta(hours=3)) == pytest.approx(100.0)  # chiller max 2 h: out


def test_a_later_window_counts_what_the_battery_can_charge_before_it_opens() -> None:
    # 1000 kWh at 15 % (min 10 %), 500 kW rated both ways, derated to 0 kW discharge right now
    b = BatteryOffer(15.0, 10.0, 1000.0, 0.0, 1.0, soc_max_pct=90.0, rated_charge_kw=500.0,
                     rated_discharge_kw=500.0, eta_charge=0.9)  # fmt: skip
    assert battery_kw(b, 3600.0) == 0.0  # open now: only what it can do now
    # one hour ahead: +450 kWh -> 60 %: 500 kWh usable over 2 h = 250 kW
    assert battery_kw(b, 7200.0, lead_s=3600.0) == pytest.approx(250.0)
    # twelve hours ahead: full at 90 %, 800 kWh usable, but one hour at 500 kW at most
    assert battery_kw(b, 3600.0, lead_s=12 * 3600.0) == pytest.approx(500.0)
