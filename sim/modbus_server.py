"""Simulated SunSpec devices, each served by its own pymodbus TCP server on loopback.

What each device shows and which writes it takes lives in :mod:`sim.sunspec_images` (re-exported
here): a full SunSpec map at 40000 that follows the park on every read. This module serves those
maps over Modbus TCP with pymodbus' new ``SimDevice`` datastore, whose ``action`` hook runs on each
read and before each write.

PV inverter: 1, 103, 120, 123. Storage: 1, 103, 120, 124, 713, 802. Meter: 1, 203 (W > 0 = import).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimDevice

from parkctl.errors import ParkError
from sim.scenario import Scenario
from sim.sunspec_images import (
    BASE_ADDRESS,
    METER_ID,
    SUNS,
    V_DC,
    V_PHASE,
    MeterDevice,
    ParkFacade,
    PvDevice,
    SimSunSpecDevice,
    StorageDevice,
)

__all__ = ["BASE_ADDRESS", "METER_ID", "SUNS", "V_DC", "V_PHASE", "Endpoint", "MeterDevice", "ModbusFault",
           "ParkEndpoints", "ParkFacade", "PvDevice", "SimServerError", "SimSunSpecDevice", "StorageDevice",
           "SunSpecServer", "start_park_servers"]

log = logging.getLogger(__name__)
# the simulated park's clients time out after 0.3 s and retry once; the controller's own re-send of a
# failed write comes after its whole budget (1.6 s): a window between the two tells them apart
RETRY_WINDOW_S = 1.0


class SimServerError(ParkError):
    """A simulated device server could not start (the message names host:port)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unit_id: int
    kind: str  # "pv", "storage" or "meter"


def _bind_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on (pymodbus only says that it cannot)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return "listen failed"


@dataclass
class ModbusFault:
    """Faults a server injects while set (``sim.fault_inject`` sets and clears them).

    ``delay_s`` holds every answer back (wall clock: the controller's timeouts are wall clock too);
    ``garbage`` answers reads with random registers from this generator; ``frozen`` answers reads with
    the registers as they were when it was set (a meter whose values stopped following the grid).
    """

    delay_s: float = 0.0
    garbage: random.Random | None = None
    frozen: bool = False
    now: Callable[[], object] | None = None  # the simulation's clock: a write repeated at the same
    # instant is the client's retransmission after a timeout, not a new setpoint


def setpoint_register(device: SimSunSpecDevice) -> int | None:
    """The register whose write completes one setpoint (PV: any write; storage: StorCtl_Mod)."""
    if isinstance(device, StorageDevice):
        for mdef, at in device.layout:
            if mdef.id == 124:
                return at + mdef.point("StorCtl_Mod").offset  # offsets count from the ID register
    return None


class SunSpecServer:
    """The TCP server of one simulated device; ``start`` again after ``stop`` reuses the port.

    ``fault`` injects misbehaviour; ``setpoints_received`` counts the setpoints the device took
    (for checking that the controller recorded every write the park saw).
    """

    def __init__(self, device: SimSunSpecDevice, host: str = "127.0.0.1", port: int = 0,
                 unit_id: int = 1) -> None:
        self.device, self.host, self.port, self.unit_id = device, host, port, unit_id
        self._server: ModbusTcpServer | None = None
        self.fault = ModbusFault()
        self.setpoints_received = 0
        self.retransmissions = 0
        self._writes: dict[tuple[int, tuple[int, ...]], tuple[float, object]] = {}  # -> arrival, sim time
        self._setpoint_reg = setpoint_register(device)
        self._pristine: list[int] | None = None  # the image before garbage was served over it

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """The device's own hook, with the faults in force around it."""
        f = self.fault
        # what the request met on arrival: the fault (or the clock) may have moved on by the time it is done
        arrived, slow, sim_now = time.monotonic(), f.delay_s > 0, f.now() if f.now is not None else object()
        if slow:
            await asyncio.sleep(f.delay_s)
        if self._pristine is not None and f.garbage is None:  # garbage over: show the real image again
            registers[:] = self._pristine
            self._pristine = None
        if set_values is None and f.frozen:
            return None  # registers keep what they showed last
        code = await self.device.action(fc, start, address, count, registers, set_values)
        if set_values is not None:
            if code is None and self._setpoint_reg in (None, *range(address, address + count)):
                self._count_write((address, tuple(set_values)), arrived, slow, sim_now)
        elif f.garbage is not None and code is None:
            if self._pristine is None:
                self._pristine = list(registers)
            off = address - start
            registers[off : off + count] = [f.garbage.randrange(0x10000) for _ in range(count)]
        return code

    def _count_write(self, key: tuple[int, tuple[int, ...]], arrived: float, slow: bool, sim_now: object) -> None:
        """A setpoint, or the client's retransmission of one it already sent.

        The same write at the same simulated instant is a retransmission. While answers are slow, the
        client's retry of a timed-out write arrives one client timeout after the original (well under
        ``RETRY_WINDOW_S`` of wall clock), but may be handled after the clock moved on, or after a newer
        write; the controller's own re-sends come a whole client budget (and a cycle) apart.
        """
        prev = self._writes.get(key)
        retry = prev is not None and (prev[1] == sim_now or (slow and arrived - prev[0] < RETRY_WINDOW_S))
        if retry:
            self.retransmissions += 1
        else:
            self.setpoints_received += 1
            self._writes.pop(key, None)
            self._writes[key] = (arrived, sim_now)
        if len(self._writes) > 64:  # only recent writes can be retried
            self._writes.pop(next(iter(self._writes)))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.unit_id, self.device.kind)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> Endpoint:
        if self._server is not None:
            return self.endpoint
        sim = SimDevice(self.unit_id, simdata=self.device.simdata(), action=self._action)
        server = ModbusTcpServer(sim, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise SimServerError(f"cannot serve simulated {self.device.kind} {self.device.id!r} on "
                                  f"{self.host}:{self.port}: {_bind_problem(self.host, self.port)}") from None
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._server = server
        log.info("simulated %s %r on %s:%d", self.device.kind, self.device.id, self.host, self.port)
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class ParkEndpoints:
    """Where each simulated device listens, by device id; ``stop()`` stops them all."""

    devices: Mapping[str, Endpoint]
    servers: Mapping[str, SunSpecServer] = field(repr=False, compare=False)

    def __getitem__(self, device_id: str) -> Endpoint:
        return self.devices[device_id]

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()


async def start_park_servers(park: ParkFacade, scenario: Scenario, host: str = "127.0.0.1",
                             base_port: int = 0) -> ParkEndpoints:
    """One server per PV plant, battery and the grid meter (``METER_ID``).

    ``base_port = 0`` lets the OS choose each port; otherwise devices get consecutive ports from
    ``base_port`` in scenario order (PV, batteries, meter).
    """
    devices: list[SimSunSpecDevice] = [PvDevice(p, park) for p in scenario.pv]
    devices += [StorageDevice(b, park) for b in scenario.batteries]
    devices.append(MeterDevice(scenario.grid, park))
    servers: dict[str, SunSpecServer] = {}
    try:
        for i, device in enumerate(devices):
            server = SunSpecServer(device, host, base_port + i if base_port else 0)
            await server.start()
            servers[device.id] = server
    except BaseException:
        for server in servers.values():
            await server.stop()
        raise
    return ParkEndpoints({k: s.endpoint for k, s in servers.items()}, servers)
