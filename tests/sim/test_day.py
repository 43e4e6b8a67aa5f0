"""A simulated park day end to end: park, real Modbus TCP servers, a real Mosquitto, the runtime."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from sim.broker import BrokerUrl
from sim.day import SimOptions, simulate_day
from sim.scenario import Scenario, load_scenario

REQUIRED_KPIS = {
    "pv_available_kwh", "pv_generated_kwh", "pv_curtailed_kwh", "load_kwh", "grid_import_kwh",
    "grid_export_kwh", "battery_charge_kwh", "battery_discharge_kwh", "green_utilization",
    "self_sufficiency", "energy_cost_cny", "peak_import_kw", "co2_kg", "export_limit_violation_s",
    "import_limit_violation_s", "soc_min_pct", "soc_max_pct",
}


def midday(hour: int = 11) -> Scenario:
    """The summer scenario started late morning, when PV surplus makes the controller work."""
    sc = load_scenario("chenzhou-summer-weekday")
    return sc.model_copy(update={"start": sc.local_start + timedelta(hours=hour)})


def broker_url(broker: object) -> str:
    url = broker.url  # type: ignore[attr-defined]
    assert isinstance(url, BrokerUrl)
    return str(url)


async def test_midday_hour_balances_and_keeps_zero_export(tmp_path: Path, mosquitto_broker: object) -> None:
    options = SimOptions(hours=1.0, cycle_s=15, mqtt_url=broker_url(mosquitto_broker), out_dir=tmp_path)
    result = await simulate_day(midday(), options)
    kpis = json.loads((tmp_path / "kpis.json").read_text())
    assert set(kpis) >= REQUIRED_KPIS
    assert result.cycles == 240
    # energy balance at the point of connection closes (within 0.1 % of the load)
    balance = (kpis["pv_generated_kwh"] + kpis["grid_import_kwh"] - kpis["grid_export_kwh"]
               + kpis["battery_discharge_kwh"] - kpis["battery_charge_kwh"] - kpis["load_kwh"])
    assert abs(balance) <= 1e-3 * kpis["load_kwh"]
    assert kpis["export_limit_violation_s"] == 0
    assert kpis["import_limit_violation_s"] == 0
    # the controller really acted: the surplus went into the batteries
    assert kpis["battery_charge_kwh"] > 100
    assert kpis["soc_max_pct"] > 30.5
    header = (tmp_path / "timeseries.csv").read_text().splitlines()[0].split(",")
    assert {"ts", "pv_kw", "load_kw", "battery_kw", "grid_kw", "soc_pct"} <= set(header)
    assert len((tmp_path / "timeseries.csv").read_text().splitlines()) == 1 + 60


async def test_same_seed_gives_identical_results(tmp_path: Path, mosquitto_broker: object) -> None:
    url = broker_url(mosquitto_broker)
    runs = []
    for i in range(2):
        options = SimOptions(hours=0.25, cycle_s=15, mqtt_url=url, out_dir=tmp_path / f"run{i}")
        runs.append((await simulate_day(midday(12), options)).kpis)
    assert runs[0] == runs[1]
    other = midday(12).model_copy(update={"seed": 1})
    options = SimOptions(hours=0.25, cycle_s=15, mqtt_url=url, out_dir=tmp_path / "other")
    assert (await simulate_day(other, options)).kpis != runs[0]


@pytest.mark.parametrize("speed", [600.0])
async def test_accelerated_clock_gives_the_same_day_as_max_speed(
    tmp_path: Path, mosquitto_broker: object, speed: float
) -> None:
    url = broker_url(mosquitto_broker)
    fast = await simulate_day(midday(12), SimOptions(hours=0.1, mqtt_url=url, out_dir=tmp_path / "a"))
    paced = await simulate_day(midday(12), SimOptions(hours=0.1, speed=speed, mqtt_url=url, out_dir=tmp_path / "b"))
    assert fast.kpis == paced.kpis
