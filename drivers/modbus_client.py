"""One async Modbus TCP connection per device, with bounded waits and honest failure.

pymodbus serialises requests on a client, so each device gets its own; a slow device then only
delays itself. Timeouts are small and retries bounded so a dead device costs at most
``timeout_s * (retries + 1)`` per request. A failed request raises :class:`DeviceError` (never an
old value). After a lost connection the next request reconnects at once; if that fails, further
attempts wait an exponentially growing, capped delay, and requests made meanwhile fail fast. The
counters let operators see a flaky link before it becomes an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from parkctl.errors import DeviceError

log = logging.getLogger(__name__)

MAX_READ_COUNT = 125  # registers per read request (Modbus limit)
MAX_WRITE_COUNT = 123  # registers per write request (Modbus limit)


def _read(c: AsyncModbusTcpClient, *, address: int, count: int, device_id: int) -> Awaitable[ModbusPDU]:
    return c.read_holding_registers(address, count=count, device_id=device_id)


def _write(
    c: AsyncModbusTcpClient, *, address: int, values: list[int], device_id: int
) -> Awaitable[ModbusPDU]:
    return c.write_registers(address, values, device_id=device_id)


class ModbusExceptionResponse(DeviceError):
    """The device answered, with a Modbus exception (e.g. 2 illegal address, 3 illegal value)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ClientStats:
    reads_ok: int = 0
    read_errors: int = 0
    writes_ok: int = 0
    write_errors: int = 0
    reconnects: int = 0  # connections re-established after a loss (the first connect not counted)
    out_of_range: int = 0  # readings the device layer rejected as implausible
    connected: bool = False


class ModbusDeviceClient:
    """Async Modbus TCP client for one device (one unit id on one host:port)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        unit_id: int = 1,
        name: str | None = None,
        timeout_s: float = 0.5,
        retries: int = 1,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need timeout_s > 0, retries >= 0, 0 < backoff_initial_s <= backoff_max_s")
        self.host, self.port, self.unit_id = host, port, unit_id
        self.name = name or f"{host}:{port}/{unit_id}"
        self._timeout, self._retries = timeout_s, retries
        self._backoff_initial, self._backoff_max = backoff_initial_s, backoff_max_s
        self._monotonic = monotonic
        self._client: AsyncModbusTcpClient | None = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._ever_connected = False
        self._n = {"reads_ok": 0, "read_errors": 0, "writes_ok": 0, "write_errors": 0,
                   "reconnects": 0, "out_of_range": 0}

    def __repr__(self) -> str:
        return f"ModbusDeviceClient({self.name})"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def stats(self) -> ClientStats:
        return ClientStats(**self._n, connected=self.connected)

    def count_out_of_range(self) -> None:
        """Record a reading the device layer rejected (implausible or not implemented)."""
        self._n["out_of_range"] += 1

    async def connect(self) -> None:
        """Connect now if not connected (honouring the backoff); DeviceError on failure."""
        if self.connected:
            return
        now = self._monotonic()
        if now < self._next_attempt:
            raise DeviceError(f"{self.name}: not connected, next attempt in {self._next_attempt - now:.1f} s")
        self.close()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self._timeout,
                                      retries=self._retries, reconnect_delay=0, name=self.name)
        if not await client.connect():
            client.close()
            self._backoff = min(self._backoff_max, self._backoff * 2 or self._backoff_initial)
            self._next_attempt = self._monotonic() + self._backoff
            raise DeviceError(f"{self.name}: cannot connect to {self.host}:{self.port} "
                              f"(retry in {self._backoff:.1f} s)")
        self._client = client
        if self._ever_connected:
            self._n["reconnects"] += 1
            log.info("%s: reconnected", self.name)
        self._ever_connected = True
        self._backoff, self._next_attempt = 0.0, 0.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(
        self, what: str, request: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        await self.connect()
        assert self._client is not None
        budget = self._timeout * (self._retries + 1) + 1.0
        try:
            async with asyncio.timeout(budget):
                rr = await request(self._client)
        except (ModbusException, TimeoutError, OSError) as exc:
            self.close()  # resynchronise on the next request: a late answer must not be taken for a new one
            raise DeviceError(f"{self.name}: {what} failed: {exc}") from None
        except asyncio.CancelledError:
            # the caller gave up first (the cycle's own read timeout): the request is still on the wire,
            # and its late answer would be read as the answer to the next one
            self.close()
            raise
        if rr.isError():
            code = int(rr.exception_code)
            raise ModbusExceptionResponse(f"{self.name}: {what}: Modbus exception {code}", code)
        return rr

    async def read_holding_registers(self, address: int, count: int) -> list[int]:
        """``count`` registers from ``address``, split into requests of at most 125."""
        if count < 1 or address < 0 or address + count > 0x10000:
            raise ValueError(f"bad register range {address}+{count}")
        regs: list[int] = []
        try:
            for start in range(address, address + count, MAX_READ_COUNT):
                n = min(MAX_READ_COUNT, address + count - start)
                rr = await self._call(f"read {start}+{n}", partial(_read, address=start, count=n,
                                                                    device_id=self.unit_id))
                got = list(rr.registers)
                if len(got) < n:
                    raise DeviceError(f"{self.name}: read {start}+{n}: short answer ({len(got)} registers)")
                regs.extend(got[:n])
        except DeviceError:
            self._n["read_errors"] += 1
            raise
        self._n["reads_ok"] += 1
        return regs

    async def write_registers(self, address: int, values: Sequence[int]) -> None:
        """Write ``values`` from ``address`` in one request (function 16)."""
        if not 1 <= len(values) <= MAX_WRITE_COUNT or address < 0 or address + len(values) > 0x10000:
            raise ValueError(f"bad register range {address}+{len(values)}")
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise ValueError("register values must be 0..65535")
        try:
            await self._call(f"write {address}+{len(values)}",
                             partial(_write, address=address, values=list(values), device_id=self.unit_id))
        except DeviceError:
            self._n["write_errors"] += 1
            raise
        self._n["writes_ok"] += 1
