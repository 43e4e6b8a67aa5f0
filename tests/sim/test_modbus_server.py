"""Simulated SunSpec devices over real TCP: a third-party SunSpec client reads them, writes are policed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

import sim.scenario as scenario_module
from sim.modbus_server import (
    METER_ID,
    MeterDevice,
    PvDevice,
    SimServerError,
    StorageDevice,
    SunSpecServer,
    start_park_servers,
)
from sim.scenario import Battery, Grid, PvPlant, Scenario, load_scenario
from sim.state import BatteryState, MeterState, PvState

T0 = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
PLANT = PvPlant(id="pv-1", dc_kwp=1800, ac_kw=1500)
BATTERY = Battery(id="bess-1", capacity_kwh=4000, p_charge_max_kw=2000, p_discharge_max_kw=2000)
GRID = Grid(voltage_kv=10, import_cap_kw=6300, export_cap_kw=0)


class FakePark:
    """Stands in for sim.park.Park: fixed states the test edits, commands recorded."""

    def __init__(self) -> None:
        self.pv = PvState(T0, available_kw=900.0, p_kw=850.5, limit_pct=100.0, limit_enabled=False,
                          energy_kwh=1234.5)
        self.battery = BatteryState(T0, p_kw=-500.0, setpoint_kw=-500.0, soc_pct=42.5, soh_pct=98.0,
                                    available_charge_kw=1800.0, available_discharge_kw=2000.0,
                                    charge_kwh=100.0, discharge_kwh=200.0, watchdog_tripped=False)
        self.meter = MeterState(T0, p_kw=1234.0, import_kwh=5000.0, export_kwh=10.0, voltage_v=10000.0,
                                frequency_hz=50.01)
        self.calls: list[tuple[Any, ...]] = []

    def pv_state(self, pv_id: str) -> PvState:
        return self.pv

    def battery_state(self, battery_id: str) -> BatteryState:
        return self.battery

    def meter_state(self) -> MeterState:
        return self.meter

    def set_pv_limit(self, pv_id: str, limit_pct: float | None, revert_s: float | None) -> None:
        self.calls.append(("pv", pv_id, limit_pct, revert_s))

    def set_battery_power(self, battery_id: str, p_kw: float, revert_s: float | None) -> None:
        self.calls.append(("battery", battery_id, p_kw, revert_s))


@pytest.fixture
def park() -> FakePark:
    return FakePark()


@pytest.fixture
async def servers(park: FakePark) -> AsyncIterator[dict[str, SunSpecServer]]:
    running = {"pv": SunSpecServer(PvDevice(PLANT, park)),
               "storage": SunSpecServer(StorageDevice(BATTERY, park)),
               "meter": SunSpecServer(MeterDevice(GRID, park))}
    for s in running.values():
        await s.start()
    yield running
    for s in running.values():
        await s.stop()


def _scan(port: int) -> dict[Any, Any]:
    """The standard pysunspec2 client: scan, read every model, return the values by model id."""
    dev = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        dev.scan()
        return {mid: dev.models[mid][0] for mid in dev.models if isinstance(mid, int)}
    finally:
        dev.disconnect()


async def test_pysunspec2_discovers_and_reads_all_three_devices(servers: dict[str, SunSpecServer]) -> None:
    pv, storage, meter = await asyncio.gather(*(asyncio.to_thread(_scan, servers[k].port)
                                                for k in ("pv", "storage", "meter")))
    assert sorted(pv) == [1, 103, 120, 123]
    assert sorted(storage) == [1, 103, 120, 124, 713, 802]
    assert sorted(meter) == [1, 203]
    assert (pv[1].Mn.cvalue, pv[1].Md.cvalue, pv[1].SN.cvalue) == ("parkctl", "sim-pv", "pv-1")
    assert pv[103].W.cvalue == pytest.approx(850_500, abs=50)
    assert pv[103].WH.cvalue == pytest.approx(1_234_500)
    assert pv[120].WRtg.cvalue == pytest.approx(1_500_000)
    assert pv[123].WMaxLim_Ena.cvalue == 0
    assert storage[103].W.cvalue == pytest.approx(-500_000)  # charging: negative AC output
    assert storage[713].SoC.cvalue == pytest.approx(42.5)
    assert storage[713].WHRtg.cvalue == pytest.approx(4_000_000)
    assert storage[124].WChaMax.cvalue == pytest.approx(2_000_000)
    assert storage[124].ChaSt.cvalue == 4  # CHARGING
    assert storage[802].WChaRteMax.cvalue == pytest.approx(1_800_000)
    assert meter[203].W.cvalue == pytest.approx(1_234_000, abs=500)
    assert meter[203].TotWhImp.cvalue == pytest.approx(5_000_000)
    assert meter[203].Hz.cvalue == pytest.approx(50.01)


async def test_pysunspec2_writes_reach_the_park(servers: dict[str, SunSpecServer], park: FakePark) -> None:
    def write_limit(port: int) -> None:
        dev = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
        try:
            dev.scan()
            ctl = dev.models[123][0]
            ctl.WMaxLimPct.cvalue = 40
            ctl.WMaxLimPct_RvrtTms.value = 30
            ctl.WMaxLim_Ena.value = 1
            ctl.write()
        finally:
            dev.disconnect()

    await asyncio.to_thread(write_limit, servers["pv"].port)
    assert park.calls[-1] == ("pv", "pv-1", 40.0, 30.0)


async def _modbus(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    assert await client.connect()
    return client


async def test_values_follow_the_park_on_every_read(servers: dict[str, SunSpecServer],
                                                    park: FakePark) -> None:
    client = await _modbus(servers["meter"].port)
    try:
        w_at = 40070 + 18  # model 203 follows model 1 (2 + 66 registers from 40002); W at offset 18
        assert (await client.read_holding_registers(w_at, count=1)).registers == [1234]  # W_SF = 3
        park.meter = replace(park.meter, p_kw=-321.0)  # exporting
        assert (await client.read_holding_registers(w_at, count=1)).registers == [0x10000 - 321]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("kind", "address", "values", "code"),
    [
        ("pv", 40070 + 14, [1], ExcCodes.ILLEGAL_ADDRESS),  # 103 W: read-only
        ("pv", 39990, [1], ExcCodes.ILLEGAL_ADDRESS),  # below the map
        ("pv", 45000, [1], ExcCodes.ILLEGAL_ADDRESS),  # past the map
        ("pv", 40000, [0], ExcCodes.ILLEGAL_ADDRESS),  # the marker
        ("pv", 40150 + 5, [15000], ExcCodes.ILLEGAL_VALUE),  # WMaxLimPct 150 %
        ("pv", 40150 + 9, [2], ExcCodes.ILLEGAL_VALUE),  # WMaxLim_Ena must be 0/1
        ("storage", 40150 + 5, [4], ExcCodes.ILLEGAL_VALUE),  # StorCtl_Mod has two bits
        ("storage", 40150 + 12, [12000], ExcCodes.ILLEGAL_VALUE),  # OutWRte 120 %
        ("storage", 40150 + 8, [0], ExcCodes.ILLEGAL_ADDRESS),  # ChaState: read-only
        ("storage", 40150 + 24, [0, 0, 0], ExcCodes.ILLEGAL_ADDRESS),  # runs into the SF registers
        ("meter", 40070 + 18, [0], ExcCodes.ILLEGAL_ADDRESS),  # a meter takes no commands
    ],
)
async def test_bad_writes_get_modbus_exceptions(servers: dict[str, SunSpecServer], park: FakePark, kind: str,
                                               address: int, values: list[int], code: ExcCodes) -> None:
    client = await _modbus(servers[kind].port)
    try:
        rr = await client.write_registers(address, values)
        assert rr.isError()
        assert rr.exception_code == code
        assert park.calls == []
    finally:
        client.close()


async def test_storage_setpoint_registers(servers: dict[str, SunSpecServer], park: FakePark) -> None:
    client = await _modbus(servers["storage"].port)
    try:
        # OutWRte 50.00 %, InWRte 0, WinTms 0, RvrtTms 30 s, RmpTms 0; then StorCtl_Mod = DISCHARGE
        assert not (await client.write_registers(40150 + 12, [5000, 0, 0, 30, 0])).isError()
        assert not (await client.write_register(40150 + 5, 0b10)).isError()
        assert park.calls[-1] == ("battery", "bess-1", 1000.0, 30.0)
        # the convention's negative InWRte with the CHARGE bit also discharges
        assert not (await client.write_registers(40150 + 12, [0, 0x10000 - 2500])).isError()
        assert not (await client.write_register(40150 + 5, 0b01)).isError()
        assert park.calls[-1] == ("battery", "bess-1", 500.0, 30.0)
        regs = (await client.read_holding_registers(40150 + 5, count=1)).registers
        assert regs == [0b01]
        park.battery = replace(park.battery, watchdog_tripped=True)  # the device idled itself
        regs = (await client.read_holding_registers(40150, count=26)).registers
        assert (regs[5], regs[12], regs[13]) == (0, 0, 0)
    finally:
        client.close()


async def test_port_in_use_gives_a_one_line_error(servers: dict[str, SunSpecServer], park: FakePark) -> None:
    port = servers["pv"].port
    clash = SunSpecServer(PvDevice(PLANT, park), port=port)
    with pytest.raises(SimServerError) as exc:
        await clash.start()
    message = str(exc.value)
    assert f"127.0.0.1:{port}" in message and "\n" not in message
    assert "in use" in message
    assert not clash.running


async def test_start_park_servers_for_a_scenario(park: FakePark, caplog: pytest.LogCaptureFixture) -> None:
    # by path: with no tests/__init__.py, pytest's rootdir insertion lets tests/sim shadow the sim package
    scenario: Scenario = load_scenario(str(Path(scenario_module.__file__).parent / "scenarios"
                                           / "chenzhou-summer-weekday.yaml"))
    with caplog.at_level(logging.WARNING):
        endpoints = await start_park_servers(park, scenario)
    try:
        ids = [p.id for p in scenario.pv] + [b.id for b in scenario.batteries] + [METER_ID]
        assert list(endpoints.devices) == ids
        assert len({e.port for e in endpoints.devices.values()}) == len(ids)
        assert {endpoints[i].kind for i in ids} == {"pv", "storage", "meter"}
        assert endpoints[METER_ID] == endpoints.devices[METER_ID]
        assert endpoints["bess-2"].host == "127.0.0.1" and endpoints["bess-2"].unit_id == 1
        storage = await asyncio.to_thread(_scan, endpoints["bess-2"].port)
        assert storage[124].WChaMax.cvalue == pytest.approx(1_000_000)
        assert not [r for r in caplog.records if "deprecat" in r.getMessage().lower()]
    finally:
        await endpoints.stop()
    client = AsyncModbusTcpClient("127.0.0.1", port=endpoints["meter"].port, timeout=0.5, reconnect_delay=0)
    assert not await client.connect()  # stopped means closed
    client.close()
