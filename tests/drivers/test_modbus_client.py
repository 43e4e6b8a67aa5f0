"""ModbusDeviceClient against real pymodbus servers on loopback: splitting, errors, backoff, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus_client import ClientStats, ModbusDeviceClient, ModbusExceptionResponse
from parkctl.errors import DeviceError


class FakeTime:
    """Injected monotonic clock: backoff is checked without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class PlainServer:
    """Registers 0..299 writable (value = address), 300..309 read-only; counts read requests."""

    def __init__(self) -> None:
        self.reads = 0
        self.port = 0
        self._server: ModbusTcpServer | None = None

    async def _action(self, fc: int, start: int, address: int, count: int, regs: list[int],
                      values: list[int] | list[bool] | None) -> ExcCodes | None:
        if values is None:
            self.reads += 1
        return None

    async def start(self) -> None:
        device = SimDevice(1, simdata=[
            SimData(0, values=list(range(300)), datatype=DataType.REGISTERS),
            SimData(300, values=[7] * 10, datatype=DataType.REGISTERS, readonly=True),
        ], action=self._action)
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


@pytest.fixture
async def server() -> AsyncIterator[PlainServer]:
    srv = PlainServer()
    await srv.start()
    yield srv
    await srv.stop()


def _client(port: int, **kw: object) -> ModbusDeviceClient:
    opts: dict[str, object] = {"timeout_s": 0.2, "retries": 0, "backoff_initial_s": 0.5, "backoff_max_s": 2.0}
    opts.update(kw)
    return ModbusDeviceClient("127.0.0.1", port, **opts)  # type: ignore[arg-type]


async def test_reads_split_into_requests_of_at_most_125(server: PlainServer) -> None:
    client = _client(server.port)
    try:
        assert await client.read_holding_registers(10, 3) == [10, 11, 12]
        server.reads = 0
        regs = await client.read_holding_registers(0, 300)
        assert regs == list(range(300))
        assert server.reads == 3  # 125 + 125 + 50
        stats = client.stats
        assert (stats.reads_ok, stats.read_errors, stats.connected) == (2, 0, True)
    finally:
        client.close()


async def test_writes_and_modbus_exceptions_are_counted(server: PlainServer) -> None:
    client = _client(server.port)
    try:
        await client.write_registers(5, [111, 222])
        assert await client.read_holding_registers(5, 2) == [111, 222]
        with pytest.raises(ModbusExceptionResponse) as bad_write:
            await client.write_registers(300, [1])  # read-only
        assert bad_write.value.code == ExcCodes.ILLEGAL_ADDRESS
        with pytest.raises(ModbusExceptionResponse) as bad_read:
            await client.read_holding_registers(305, 10)  # runs past the map
        assert bad_read.value.code == ExcCodes.ILLEGAL_ADDRESS
        assert client.connected  # an exception answer is not a broken link
        s = client.stats
        assert (s.writes_ok, s.write_errors, s.reads_ok, s.read_errors) == (1, 1, 1, 1)
        with pytest.raises(ValueError):
            await client.read_holding_registers(0, 0)
        with pytest.raises(ValueError):
            await client.write_registers(0, [70000])
    finally:
        client.close()


async def test_stats_are_a_frozen_value() -> None:
    stats = _client(1).stats
    assert stats == ClientStats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.reads_ok = 5  # type: ignore[misc]


async def test_unreachable_device_backs_off_exponentially_up_to_the_cap(server: PlainServer) -> None:
    port = server.port
    await server.stop()
    clock = FakeTime()
    client = _client(port, monotonic=clock)
    delays = []
    for _ in range(5):
        with pytest.raises(DeviceError, match="cannot connect") as exc:
            await client.read_holding_registers(0, 1)
        delays.append(float(str(exc.value).split("retry in ")[1].split(" s")[0]))
        with pytest.raises(DeviceError, match="next attempt in"):  # fails fast, no connect attempt
            await client.read_holding_registers(0, 1)
        clock.t += delays[-1]
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert client.stats.read_errors == 10
    server.port = port
    await server.start()
    assert await client.read_holding_registers(1, 1) == [1]
    assert client.stats.reconnects == 0  # never connected before: a first connect, not a reconnect


async def test_server_that_goes_away_and_returns(server: PlainServer) -> None:
    clock = FakeTime()
    client = _client(server.port, monotonic=clock)
    try:
        assert await client.read_holding_registers(0, 2) == [0, 1]
        await server.stop()
        errors_before = client.stats.read_errors
        for _ in range(3):  # never a stale value while it is gone
            with pytest.raises(DeviceError):
                await client.read_holding_registers(0, 2)
            clock.t += 10
        assert client.stats.read_errors == errors_before + 3
        assert not client.connected
        await server.start()  # same port
        assert await client.read_holding_registers(0, 2) == [0, 1]
        assert client.stats.reconnects == 1
        assert client.stats.connected
    finally:
        client.close()


async def test_silent_device_costs_at_most_timeout_times_attempts() -> None:
    handler_done = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # never answers; returns when the client hangs up
        writer.close()
        handler_done.set()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    client = _client(port, timeout_s=0.1, retries=1)
    try:
        t0 = time.perf_counter()
        with pytest.raises(DeviceError, match="failed"):
            await client.read_holding_registers(0, 1)
        assert time.perf_counter() - t0 < 1.0
        assert not client.connected  # dropped, so a late answer cannot be taken for the next one
        assert client.stats.read_errors == 1
    finally:
        client.close()
        await asyncio.wait_for(handler_done.wait(), 2.0)
        silent.close()
        await silent.wait_closed()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ModbusDeviceClient("127.0.0.1", 502, timeout_s=0)
    with pytest.raises(ValueError):
        ModbusDeviceClient("127.0.0.1", 502, backoff_initial_s=5, backoff_max_s=1)
