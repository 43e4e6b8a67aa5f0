"""systemd's notify protocol (``sd_notify``) in a few lines of stdlib, for ``Type=notify`` + ``WatchdogSec``.

Why a watchdog: a controller whose process is alive but whose cycle is stuck (a hung await, a deadlock)
is worse than a dead one, because nothing restarts it. :class:`SystemdNotifier` is a cycle observer: it
says READY=1 after the first completed cycle and WATCHDOG=1 after completed cycles, so systemd restarts
the service when cycles stop completing, not merely when the process exits. Outside systemd
(no ``NOTIFY_SOCKET``) every call is a cheap no-op, so the same code runs in tests and containers.

Protocol: one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(a leading ``@`` means the abstract namespace). ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, when set,
naming this process) give the watchdog period; pinging at half of it is the documented practice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.cycle import CycleReport

log = logging.getLogger(__name__)


def notify_address(env: Mapping[str, str]) -> str | None:
    """The socket address to send to, or None outside systemd (or for a socket kind we do not speak)."""
    addr = env.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]
    return addr if addr.startswith("/") else None


def watchdog_period_s(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """The WatchdogSec systemd expects us to honour, or None when no watchdog is armed for this process."""
    usec, owner = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (owner and owner != str(pid if pid is not None else os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class SystemdNotifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING; an :class:`~controller.cycle.Observer` of the runtime."""

    def __init__(self, env: Mapping[str, str] | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.address = notify_address(env)
        period = watchdog_period_s(env)
        self.ping_every_s = None if period is None else period / 2
        self._monotonic = monotonic
        self._sock: socket.socket | None = None
        self._last_ping = float("-inf")
        self._failed = False
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=VALUE`` fields; False when not under systemd or the send failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: systemd will act on the missing pings, the log says why
                log.warning("sd_notify to %r failed: %s", self.address, exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> bool:
        self.ready_sent = True
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        self._last_ping = self._monotonic()
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def on_cycle(self, report: CycleReport) -> None:
        """READY=1 after the first cycle, then WATCHDOG=1 (at most every half watchdog period)."""
        if not self.enabled:
            return
        status = (f"STATUS=cycle at {report.ts:%H:%M:%S}: {report.work_s * 1000:.0f} ms of work, "
                  f"{len(report.errors)} errors{', OVERRUN' if report.overrun else ''}")  # fmt: skip
        if not self.ready_sent:
            self.ready_sent = True
            self._last_ping = self._monotonic()
            self.send("READY=1", "WATCHDOG=1", status)
            return
        now = self._monotonic()
        if self.ping_every_s is None or now - self._last_ping >= self.ping_every_s:
            self._last_ping = now
            self.send("WATCHDOG=1", status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
