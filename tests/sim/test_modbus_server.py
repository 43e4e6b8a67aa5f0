"""Simulated SunSpec devices over real TCP: a third-party SunSpec client reads them, writes are policed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

import sim.scenario as scenario_module
from drivers.sunspec.codec import decode_block
from sim.modbus_server import (
    BASE_ADDRESS,
    METER_ID,
    MeterDevice,
    PvDevice,
    SimServerError,
    SimSunSpecDevice,
    StorageDevice,
    SunSpecServer,
    start_park_servers,
)
from sim.scenario import Battery, Grid, PvPlant, Scenario, load_scenario
from sim.state import BatteryState, MeterState, PvState
from sim.sunspec_images import V_PHASE

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


# -- every point that follows the park follows it, read after read (fixed parts are encoded once) ----

_kw = st.floats(0, 1500)
_pv_states = st.builds(PvState, st.just(T0), _kw, _kw, st.floats(0, 100), st.booleans(), st.floats(0.001, 4e6))
_battery_states = st.builds(BatteryState, st.just(T0), st.floats(-2000, 2000), st.just(0.0), st.floats(0, 100),
                            st.floats(50, 100), st.floats(0, 2000), st.floats(0, 2000), st.floats(0, 1e6),
                            st.floats(0.001, 4e6), st.booleans())
_meter_states = st.builds(MeterState, st.just(T0), st.floats(-9000, 9000), st.floats(0.01, 4e5),
                          st.floats(0.01, 4e5), st.floats(9000, 11000), st.floats(49, 51))


def _registers(device: SimSunSpecDevice) -> list[int]:
    """The device's whole map as pymodbus holds it, from 40000."""
    return [int(v) for run in device.simdata() for v in cast(list[int], run.values)]


def _read_all(device: SimSunSpecDevice, regs: list[int]) -> dict[int, dict[str, Any]]:
    """Every model of ``device`` as a client reading the whole map would decode it."""
    assert asyncio.run(device.action(3, BASE_ADDRESS, BASE_ADDRESS, len(regs), regs, None)) is None
    return {mdef.id: decode_block(mdef, regs[at - BASE_ADDRESS : at - BASE_ADDRESS + 2 + mdef.length])
            for mdef, at in device.layout}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_pv_states, _battery_states, _meter_states), min_size=2, max_size=4))
def test_every_park_derived_point_follows_the_park(states: list[tuple[PvState, BatteryState, MeterState]]) -> None:
    park = FakePark()
    pv, storage, meter = PvDevice(PLANT, park), StorageDevice(BATTERY, park), MeterDevice(GRID, park)
    regs = {d: _registers(d) for d in (pv, storage, meter)}
    for park.pv, park.battery, park.meter in states:
        p, b, m = park.pv, park.battery, park.meter
        inv, _, ctl = (got := _read_all(pv, regs[pv]))[103], got[120], got[123]
        assert inv["W"] == pytest.approx(p.p_kw * 1000, abs=50)
        assert inv["A"] == pytest.approx(p.p_kw * 1000 / V_PHASE, abs=0.5)
        assert inv["WH"] == pytest.approx(p.energy_kwh * 1000, abs=0.5) or p.energy_kwh * 1000 < 0.5
        throttled = p.limit_enabled and p.p_kw < p.available_kw - 1e-3
        assert inv["St"] == (5 if throttled else 4 if p.p_kw > 0 else 2)
        assert ctl["WMaxLim_Ena"] == int(p.limit_enabled)
        assert ctl["WMaxLimPct"] == pytest.approx(p.limit_pct if p.limit_enabled else 100.0, abs=0.005)
        got = _read_all(storage, regs[storage])
        w = b.p_kw * 1000
        assert got[103]["W"] == got[802]["W"] == pytest.approx(w, abs=50)
        assert got[103]["WH"] == pytest.approx(b.discharge_kwh * 1000, abs=0.5) or b.discharge_kwh * 1000 < 0.5
        assert got[103]["St"] == (4 if w != 0 else 8)
        assert got[124]["ChaState"] == got[713]["SoC"] == got[802]["SoC"] == pytest.approx(b.soc_pct, abs=0.005)
        assert got[713]["SoH"] == got[802]["SoH"] == pytest.approx(b.soh_pct, abs=0.005)
        avail = max(0.0, b.soc_pct - BATTERY.soc_min_pct) / 100 * BATTERY.capacity_kwh * 1000
        assert got[713]["WHAvail"] == pytest.approx(avail, abs=50)
        assert got[802]["WChaRteMax"] == pytest.approx(b.available_charge_kw * 1000, abs=50)
        assert got[802]["WDisChaRteMax"] == pytest.approx(b.available_discharge_kw * 1000, abs=50)
        assert got[802]["A"] == pytest.approx(w / 800, abs=0.5)
        assert got[802]["State"] == (4 if b.watchdog_tripped else 3)
        assert got[124]["ChaSt"] == got[802]["ChaSt"]
        assert got[124]["WChaMax"] == pytest.approx(2_000_000)  # and the fixed part stays
        got = _read_all(meter, regs[meter])
        mm = got[203]
        assert mm["W"] == pytest.approx(m.p_kw * 1000, abs=500)
        assert mm["PhV"] == pytest.approx(m.voltage_v / 3**0.5, abs=0.5)
        assert mm["PPV"] == pytest.approx(m.voltage_v, abs=0.5)
        assert mm["A"] == pytest.approx(abs(m.p_kw * 1000) / (3**0.5 * m.voltage_v) * 3, abs=0.05)
        assert mm["Hz"] == pytest.approx(m.frequency_hz, abs=0.005)
        assert mm["TotWhImp"] == pytest.approx(m.import_kwh * 1000, abs=5)
        assert mm["TotWhExp"] == pytest.approx(m.export_kwh * 1000, abs=5)
