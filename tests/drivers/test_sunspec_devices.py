"""SunSpec drivers end to end against the simulated devices (and hand-made maps) over real TCP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.capabilities import Meter, PvInverter, Storage
from drivers.modbus_client import ModbusDeviceClient
from drivers.sunspec.codec import encode_block
from drivers.sunspec.discovery import ModelInstance, discover
from drivers.sunspec.models import model_def
from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
from parkctl.clock import SimClock
from parkctl.errors import DeviceError
from sim.modbus_server import MeterDevice, PvDevice, StorageDevice, SunSpecServer
from sim.scenario import Battery, Grid, PvPlant
from sim.state import BatteryState, MeterState, PvState

T0 = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
R = TypeVar("R")


class FakePark:
    """Minimal park: states the test edits; PV limits and battery setpoints are applied at once."""

    def __init__(self) -> None:
        self.pv = PvState(T0, available_kw=900.0, p_kw=850.0, limit_pct=100.0, limit_enabled=False,
                          energy_kwh=1234.5)
        self.battery = BatteryState(T0, p_kw=0.0, setpoint_kw=0.0, soc_pct=42.5, soh_pct=98.0,
                                    available_charge_kw=1800.0, available_discharge_kw=2000.0,
                                    charge_kwh=100.0, discharge_kwh=200.0, watchdog_tripped=False)
        self.meter = MeterState(T0, p_kw=1234.0, import_kwh=5000.0, export_kwh=10.0, voltage_v=10000.0,
                                frequency_hz=50.0)
        self.calls: list[tuple[Any, ...]] = []

    def pv_state(self, pv_id: str) -> PvState:
        return self.pv

    def battery_state(self, battery_id: str) -> BatteryState:
        return self.battery

    def meter_state(self) -> MeterState:
        return self.meter

    def set_pv_limit(self, pv_id: str, limit_pct: float | None, revert_s: float | None) -> None:
        self.calls.append(("pv", limit_pct, revert_s))
        self.pv = replace(self.pv, limit_pct=100.0 if limit_pct is None else limit_pct,
                          limit_enabled=limit_pct is not None)

    def set_battery_power(self, battery_id: str, p_kw: float, revert_s: float | None) -> None:
        self.calls.append(("battery", p_kw, revert_s))
        self.battery = replace(self.battery, p_kw=p_kw, setpoint_kw=p_kw)


@pytest.fixture
def park() -> FakePark:
    return FakePark()


@pytest.fixture
async def sim(park: FakePark) -> AsyncIterator[dict[str, SunSpecServer]]:
    servers = {
        "pv": SunSpecServer(PvDevice(PvPlant(id="pv-1", dc_kwp=1800, ac_kw=1500), park)),
        "storage": SunSpecServer(StorageDevice(
            Battery(id="bess-1", capacity_kwh=4000, p_charge_max_kw=2000, p_discharge_max_kw=2000), park)),
        "meter": SunSpecServer(MeterDevice(Grid(voltage_kv=10, import_cap_kw=6300, export_cap_kw=0), park)),
    }
    for s in servers.values():
        await s.start()
    yield servers
    for s in servers.values():
        await s.stop()


def _client(server: SunSpecServer | int) -> ModbusDeviceClient:
    port = server if isinstance(server, int) else server.port
    return ModbusDeviceClient("127.0.0.1", port, timeout_s=0.3, retries=0, backoff_initial_s=0.02,
                              backoff_max_s=0.1)


async def _serve(image: dict[int, list[int]]) -> ModbusTcpServer:
    """A plain register map (start address -> registers) on a free loopback port."""
    blocks = [SimData(a, values=regs, datatype=DataType.REGISTERS) for a, regs in sorted(image.items())]
    server = ModbusTcpServer(SimDevice(1, simdata=blocks), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    return server


def _port(server: ModbusTcpServer) -> int:
    return int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


SUNS = [0x5375, 0x6E53]
END = [0xFFFF, 0]


async def test_discovery_walks_the_model_chain(sim: dict[str, SunSpecServer]) -> None:
    client = _client(sim["pv"])
    try:
        models = await discover(client)
    finally:
        client.close()
    assert models == (ModelInstance(1, 40002, 66), ModelInstance(103, 40070, 50),
                      ModelInstance(120, 40122, 26), ModelInstance(123, 40150, 24))
    assert models[1].end == 40122


@pytest.mark.parametrize("base", [0, 50000])
async def test_discovery_falls_back_to_other_bases(base: int) -> None:
    common = encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    server = await _serve({base: SUNS + common + END})
    client = _client(_port(server))
    try:
        assert await discover(client) == (ModelInstance(1, base + 2, 66),)
    finally:
        client.close()
        await server.shutdown()  # type: ignore[no-untyped-call]


async def test_no_marker_and_missing_end_marker() -> None:
    common = encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    server = await _serve({40000: [1, 2, 3], 50000: SUNS + common})  # no end marker after model 1
    client = _client(_port(server))
    try:
        assert await discover(client, bases=(50000,)) == (ModelInstance(1, 50002, 66),)
        with pytest.raises(DeviceError, match="no SunSpec marker"):
            await discover(client, bases=(40000, 0))
    finally:
        client.close()
        await server.shutdown()  # type: ignore[no-untyped-call]


async def test_pv_inverter_reads_and_limits(sim: dict[str, SunSpecServer], park: FakePark) -> None:
    client = _client(sim["pv"])
    pv = SunSpecPvInverter("pv-1", client, clock=SimClock(T0), revert_s=120)
    assert isinstance(pv, PvInverter)
    try:
        r = await pv.read_pv()
        assert (r.ts, r.p_kw, r.rated_kw, r.limit_pct, r.energy_kwh) == (T0, 850.0, 1500.0, None, 1234.5)
        await pv.set_pv_limit(750.0)
        assert park.calls == [("pv", 50.0, 120.0)]
        regs = await client.read_holding_registers(40150, 10)
        assert (regs[5], regs[7], regs[9]) == (5000, 120, 1)  # WMaxLimPct 50.00 %, RvrtTms, Ena
        assert (await pv.read_pv()).limit_pct == 50.0
        await pv.set_pv_limit(5000.0)  # above the rating: capped at 100 %
        assert park.calls[-1] == ("pv", 100.0, 120.0)
        await pv.set_pv_limit(None)
        assert park.calls[-1] == ("pv", None, 120.0)  # type: ignore[comparison-overlap]
        assert (await pv.read_pv()).limit_pct is None
        with pytest.raises(ValueError):
            await pv.set_pv_limit(-1.0)
        before = client.stats.reads_ok
        await pv.read_pv()
        assert client.stats.reads_ok == before + 1  # 103 and 123 in one request
    finally:
        client.close()


async def test_storage_reads_and_setpoints(sim: dict[str, SunSpecServer], park: FakePark) -> None:
    client = _client(sim["storage"])
    bess = SunSpecStorage("bess-1", client, clock=SimClock(T0), revert_s=45)
    assert isinstance(bess, Storage)
    try:
        await bess.set_battery_power(1500.0)  # before any read: WChaMax is read first
        assert park.calls[-1] == ("battery", 1500.0, 45.0)
        regs = await client.read_holding_registers(40150, 26)
        assert (regs[5], regs[12], regs[13], regs[15]) == (0b10, 7500, 0, 45)  # DISCHARGE, OutWRte 75 %
        r = await bess.read_battery()
        assert (r.ts, r.p_kw, r.soc_pct, r.capacity_kwh, r.soh_pct) == (T0, 1500.0, 42.5, 4000.0, 98.0)
        assert (r.max_charge_kw, r.max_discharge_kw) == (1800.0, 2000.0)  # model 802: what it can do now
        await bess.set_battery_power(-700.0)
        assert park.calls[-1] == ("battery", -700.0, 45.0)
        regs = await client.read_holding_registers(40150, 26)
        assert (regs[5], regs[12], regs[13]) == (0b01, 0, 3500)  # CHARGE, InWRte 35 %
        assert (await bess.read_battery()).p_kw == -700.0
        await bess.set_battery_power(0.0)
        assert park.calls[-1] == ("battery", 0.0, 45.0)
        assert (await client.read_holding_registers(40150 + 5, 1)) == [0b11]  # hold: both limits at 0
        # switching sign never passes through the opposite power: only the old value, 0 or the new one
        assert {c[1] for c in park.calls} <= {1500.0, 0.0, -700.0}
        before = client.stats.reads_ok
        await bess.read_battery()
        assert client.stats.reads_ok == before + 2  # 103..713 in one request, 802 in another
    finally:
        client.close()


async def test_meter_sign_and_counters(sim: dict[str, SunSpecServer], park: FakePark) -> None:
    client = _client(sim["meter"])
    meter = SunSpecMeter("meter", client, clock=SimClock(T0), rated_kw=6300)
    assert isinstance(meter, Meter)
    try:
        r = await meter.read_meter()
        assert (r.p_kw, r.import_kwh, r.export_kwh) == (1234.0, 5000.0, 10.0)
        park.meter = replace(park.meter, p_kw=-80.0)
        assert (await meter.read_meter()).p_kw == -80.0  # export is negative
    finally:
        client.close()


async def _rejected(read: Callable[[], Awaitable[R]], client: ModbusDeviceClient, match: str) -> None:
    before = client.stats.out_of_range
    with pytest.raises(DeviceError, match=match):
        await read()
    assert client.stats.out_of_range == before + 1


async def test_implausible_values_are_counted_and_rejected(sim: dict[str, SunSpecServer], park: FakePark,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    bc, pc = _client(sim["storage"]), _client(sim["pv"])
    bess, pv = SunSpecStorage("bess-1", bc), SunSpecPvInverter("pv-1", pc)
    try:
        await bess.read_battery()
        park.battery = replace(park.battery, soc_pct=150.0)
        with caplog.at_level(logging.WARNING, logger="drivers.sunspec_devices"):
            await _rejected(bess.read_battery, bc, "SoC = 150")
        assert "bess-1" in caplog.text
        park.battery = replace(park.battery, soc_pct=50.0)
        assert (await bess.read_battery()).soc_pct == 50.0  # and back to normal
        park.pv = replace(park.pv, p_kw=-600.0)
        await _rejected(pv.read_pv, pc, "W = -600000")
    finally:
        bc.close()
        pc.close()


async def test_not_implemented_required_point_is_rejected() -> None:
    meter_block = encode_block(model_def(203), {"W": None, "W_SF": 0, "TotWhImp": 10.0, "TotWh_SF": 0})
    common = encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    server = await _serve({40000: SUNS + common + meter_block + END})
    client = _client(_port(server))
    try:
        await _rejected(SunSpecMeter("m", client).read_meter, client, "point W is not implemented")
        with pytest.raises(DeviceError, match="no SunSpec inverter model"):
            await SunSpecPvInverter("x", client).read_pv()  # a meter is no inverter
    finally:
        client.close()
        await server.shutdown()  # type: ignore[no-untyped-call]


async def _eventually(read: Callable[[], Awaitable[R]], within_s: float = 5.0) -> R:
    """Retry ``read`` until it succeeds; bounded, no fixed sleeps deciding the outcome."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await read()
        except DeviceError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


async def test_device_that_disappears_and_returns(sim: dict[str, SunSpecServer], park: FakePark) -> None:
    client = _client(sim["pv"])
    pv = SunSpecPvInverter("pv-1", client)
    try:
        assert (await pv.read_pv()).p_kw == 850.0
        await sim["pv"].stop()
        for _ in range(3):  # gone: every read fails and is counted, none returns the old value
            with pytest.raises(DeviceError):
                await pv.read_pv()
        assert client.stats.read_errors >= 3
        park.pv = replace(park.pv, p_kw=400.0)
        await sim["pv"].start()  # back on the same port
        assert (await _eventually(pv.read_pv)).p_kw == 400.0
        assert client.stats.reconnects == 1 and client.stats.connected
    finally:
        client.close()


async def test_fallback_points_are_read_when_the_preferred_models_are_missing() -> None:
    """Storage without 713/802 takes SoC from 124 and ratings from 120; PV without 120 rates by 121."""
    common = encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    inverter = encode_block(model_def(103), {"W": 1_500_000.0, "W_SF": 2, "WH": 5000.0, "WH_SF": 0})
    nameplate = encode_block(model_def(120), {"WHRtg": 4_000_000.0, "WHRtg_SF": 2, "MaxChaRte": 1_800_000.0,
                                              "MaxDisChaRte": 2_000_000.0, "MaxChaRte_SF": 2, "MaxDisChaRte_SF": 2})
    controls = encode_block(model_def(124), {"WChaMax": 2_000_000.0, "WChaMax_SF": 2, "ChaState": 42.5,
                                             "ChaState_SF": -2, "InOutWRte_SF": -2})
    settings = encode_block(model_def(121), {"WMax": 1_000_000.0, "WMax_SF": 2})
    limit = encode_block(model_def(123), {"WMaxLimPct": 50.0, "WMaxLimPct_SF": -2, "WMaxLim_Ena": 1})
    bess_server = await _serve({40000: SUNS + common + inverter + nameplate + controls + END})
    pv_server = await _serve({40000: SUNS + common + inverter + settings + limit + END})
    bc, pc = _client(_port(bess_server)), _client(_port(pv_server))
    try:
        r = await SunSpecStorage("b", bc).read_battery()
        assert (r.p_kw, r.soc_pct, r.capacity_kwh, r.max_charge_kw, r.max_discharge_kw, r.soh_pct) == (
            1500.0, 42.5, 4000.0, 1800.0, 2000.0, None)
        p = await SunSpecPvInverter("p", pc).read_pv()
        assert (p.p_kw, p.rated_kw, p.limit_pct, p.energy_kwh) == (1500.0, 1000.0, 50.0, 5.0)
    finally:
        bc.close()
        pc.close()
        await bess_server.shutdown()  # type: ignore[no-untyped-call]
        await pv_server.shutdown()  # type: ignore[no-untyped-call]


async def test_a_bad_scale_factor_anywhere_in_a_block_rejects_the_reading() -> None:
    """Only the points a reading uses are decoded, but every scale factor of the block is checked."""
    meter_block = encode_block(model_def(203), {"W": 1000.0, "W_SF": 0, "TotWhImp": 10.0, "TotWh_SF": 0})
    meter_block[model_def(203).point("VAR_SF").offset] = 12  # not used by read_meter, and invalid
    common = encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    server = await _serve({40000: SUNS + common + meter_block + END})
    client = _client(_port(server))
    try:
        await _rejected(SunSpecMeter("m", client).read_meter, client, "scale factor 12")
    finally:
        client.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
