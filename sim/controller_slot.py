"""The controller of a simulated day: built, run, killed and built again on the same database.

``crash`` is an in-process emulation of ``kill -9``, done honestly within that limit: the controller's
tasks are cancelled wherever they are (between cycles: the clock only lets the crash happen while every
actor sleeps); MQTT connections are cut at the socket, so the broker sees no DISCONNECT and fires the
last will; Modbus sockets and the metrics port are closed, as the kernel would; the store is abandoned
without ``close()``: nothing queued is flushed, no checkpoint is made, and its SQLite connection is left
open, never closed (a killed process cannot close it either). What the kernel does at a process exit
is done by hand: the store's advisory lock is released and its checkpoint thread ends. What survives is
exactly what SQLite had committed to the WAL, as after a real kill (``tests/controller/store_child.py``
kills a real process to check that). Unlike a real crash, the dead controller's objects stay in memory:
the day's audit reads their counters, the controller never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from controller.build import Controller, build_controller
from controller.config import ControllerConfig
from controller.forecast import Forecaster
from controller.store import Store
from drivers.mqtt_session import MqttSession, cancel_and_wait
from parkctl.clock import Clock

log = logging.getLogger(__name__)

Job = Callable[[Controller], Coroutine[Any, Any, None]]


async def cut_session(session: MqttSession) -> None:
    """Drop an MQTT connection without DISCONNECT (the broker publishes the will), then end its tasks."""
    client = session._client  # what the kernel does to a dead process's socket
    if client is not None:
        sock = client._client.socket()  # paho's socket; aiomqtt has no public way
        session._closing = True  # no reconnect, no clean DISCONNECT
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await asyncio.wait(session._tasks[:1], timeout=2)
    await session._cancel()


def abandon_store(store: Store) -> None:
    """Leave the store as a killed process leaves it: no flush, no close; lock and threads die with it."""
    store._stop.set()  # its checkpoint thread would die with the process
    store._closed = True  # the abandoned context's close() must not flush anything
    if store._lock_fd is not None:  # the kernel releases a dead process's flock
        os.close(store._lock_fd)
        store._lock_fd = None


class ControllerSlot:
    """Owns the running controller of a simulated day (and the corpses of crashed ones)."""

    def __init__(
        self, config: ControllerConfig, clock: Clock, until: datetime, *, forecaster: Forecaster | None = None,
        jobs: tuple[Job, ...] = (), prepare: Callable[[Controller], None] | None = None,
    ) -> None:  # fmt: skip
        self.config, self.clock, self.until = config, clock, until
        self.forecaster, self.jobs, self.prepare = forecaster, jobs, prepare
        self.current: Controller | None = None
        self.dead: list[Controller] = []
        self.crashes = 0
        self._cm: contextlib.AbstractAsyncContextManager[Controller] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._graveyard: list[object] = []  # abandoned contexts and stores: never finalised during the run

    @property
    def controllers(self) -> list[Controller]:
        """Every controller of the day, the crashed ones first."""
        return [*self.dead, *([self.current] if self.current else [])]

    @property
    def cycles(self) -> int:
        return sum(c.runtime.stats.cycles for c in self.controllers)

    async def start(self) -> Controller:
        clock = self.clock
        cm = build_controller(self.config, clock, forecaster=self.forecaster,
                              device_monotonic=lambda: clock.now().timestamp())  # fmt: skip
        ctl = await cm.__aenter__()
        self._cm, self.current = cm, ctl
        if self.prepare is not None:
            self.prepare(ctl)
        coros = [*ctl.tasks(until=self.until), *(job(ctl) for job in self.jobs)]
        self._tasks = [asyncio.create_task(c) for c in coros]
        for task in self._tasks:
            clock.adopt(task)
        return ctl

    async def crash(self) -> None:
        """Kill the running controller (see the module docstring); ``start`` builds the next one."""
        ctl, cm = self.current, self._cm
        if ctl is None:
            return
        log.warning("controller killed (in-process crash emulation)")
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*(cancel_and_wait(t) for t in tasks))
        for session in (ctl.load_bus, ctl.telemetry):
            if session is not None:
                await cut_session(session)
        if ctl.dr is not None:
            await ctl.dr.stop()  # its connection closes cleanly: the DR side is not part of this emulation
        for client in ctl.clients.values():
            client.close()
        if ctl.metrics_server is not None:
            ctl.metrics_server.close()
        if ctl.alarms is not None:
            ctl.alarms.abandon()
        abandon_store(ctl.store)
        self._graveyard += [cm, ctl.store]
        self.dead.append(ctl)
        self.current, self._cm = None, None
        self.crashes += 1

    async def stop(self) -> None:
        """A clean end of the day: stop the cycle, end the tasks, close everything."""
        ctl, cm = self.current, self._cm
        if ctl is not None:
            ctl.runtime.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if cm is not None:
            await cm.__aexit__(None, None, None)
        self._cm = None  # ``current`` stays: its counters belong to the day

    async def bury(self) -> None:
        """After the day: let the crashed controllers' contexts end (every part is closed or abandoned
        already, so this only releases memory), rather than at some later garbage collection."""
        for obj in self._graveyard:
            if isinstance(obj, contextlib.AbstractAsyncContextManager):
                with contextlib.suppress(Exception):
                    await obj.__aexit__(None, None, None)
        self._graveyard.clear()
