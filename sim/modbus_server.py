"""Simulated SunSpec devices, each served by its own pymodbus TCP server on loopback.

What each device shows and which writes it takes lives in :mod:`sim.sunspec_images` (re-exported
here): a full SunSpec map at 40000 that follows the park on every read. This module serves those
maps over Modbus TCP with pymodbus' new ``SimDevice`` datastore, whose ``action`` hook runs on each
read and before each write.

PV inverter: 1, 103, 120, 123. Storage: 1, 103, 120, 124, 713, 802. Meter: 1, 203 (W > 0 = import).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

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

__all__ = ["BASE_ADDRESS", "METER_ID", "SUNS", "V_DC", "V_PHASE", "Endpoint", "MeterDevice", "ParkEndpoints",
           "ParkFacade", "PvDevice", "SimServerError", "SimSunSpecDevice", "StorageDevice", "SunSpecServer",
           "start_park_servers"]

log = logging.getLogger(__name__)


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


class SunSpecServer:
    """The TCP server of one simulated device; ``start`` again after ``stop`` reuses the port."""

    def __init__(self, device: SimSunSpecDevice, host: str = "127.0.0.1", port: int = 0,
                 unit_id: int = 1) -> None:
        self.device, self.host, self.port, self.unit_id = device, host, port, unit_id
        self._server: ModbusTcpServer | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.unit_id, self.device.kind)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> Endpoint:
        if self._server is not None:
            return self.endpoint
        sim = SimDevice(self.unit_id, simdata=self.device.simdata(), action=self.device.action)
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
