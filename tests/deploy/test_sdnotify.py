"""sd_notify over a real AF_UNIX datagram socket, as systemd would receive it."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.cycle import CycleReport, CycleSettings, Runtime
from controller.devices import DeviceSet
from controller.sdnotify import SystemdNotifier, notify_address, watchdog_period_s
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from drivers.capabilities import MeterReading
from parkctl.clock import SimClock

T0 = datetime(2026, 7, 15, 3, 0, tzinfo=UTC)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def report(work_s: float = 0.02, overrun: bool = False) -> CycleReport:
    return CycleReport(T0, Snapshot(ts=T0, meter=None), Setpoints(), (), ("read meter: timeout",), {}, work_s, overrun)


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_outside_systemd_everything_is_a_no_op() -> None:
    n = SystemdNotifier(env={})
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping()
    n.on_cycle(report())


def test_addresses_and_watchdog_environment() -> None:
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@abstract"}) == "\0abstract"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_period_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 10.0
    assert watchdog_period_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None  # meant for another process
    assert watchdog_period_s({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_period_s({}) is None


def test_ready_after_first_cycle_then_watchdog_at_half_the_period(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    ticks = Ticks()
    n = SystemdNotifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, monotonic=ticks)
    assert n.ping_every_s == 5.0
    n.on_cycle(report())
    first = received(sock)
    assert first[:2] == ["READY=1", "WATCHDOG=1"]
    assert first[2].startswith("STATUS=cycle at 03:00:00: 20 ms of work, 1 errors")
    for t in (1.0, 2.0, 4.9):  # within half the watchdog period: no datagram
        ticks.t = t
        n.on_cycle(report())
    ticks.t = 5.0
    n.on_cycle(report(work_s=1.2, overrun=True))
    msg = received(sock)
    assert msg[0] == "WATCHDOG=1" and msg[1].endswith("OVERRUN")
    assert n.stopping() and received(sock) == ["STOPPING=1"]
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    n.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"parkctl-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        n = SystemdNotifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.ready("connected to 7 devices")
        assert received(sock) == ["READY=1", "STATUS=connected to 7 devices"]
    finally:
        sock.close()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = SystemdNotifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled and not n.watchdog()
    n.on_cycle(report())  # must not raise into the runtime


async def test_as_an_observer_of_the_real_runtime(systemd: tuple[socket.socket, str]) -> None:
    """READY once the first cycle completed, then a watchdog ping every half period of cycling."""
    sock, path = systemd
    clock = SimClock(T0)

    class Meter:
        id = "meter"

        async def read_meter(self) -> MeterReading:
            return MeterReading(clock.now(), 100.0)

    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}
    notifier = SystemdNotifier(env=env, monotonic=lambda: clock.now().timestamp())
    runtime = Runtime(DeviceSet.discover([Meter()]), lambda s, p: p, clock, CycleSettings(period_s=1.0), [notifier])
    await runtime.run(until=T0 + timedelta(seconds=10))  # cycles at 0, 1, ..., 9 s
    sock.settimeout(0.05)
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(received(sock)[0])
    assert got == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]  # at 0 s, then 2, 4, 6, 8 s
