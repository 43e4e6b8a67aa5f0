"""Clocks shared by the controller and the simulated park.

Everything that needs the time is handed a :class:`Clock`; nothing reads the system clock on its own.
That is what lets the live controller, a real-time simulated park and an "as fast as possible" replay
run the very same decision code.

:class:`SimClock` is a small discrete-event scheduler. Tasks that call :meth:`SimClock.sleep_until`
become *actors*; virtual time only moves forward when every live actor is asleep and nobody holds the
clock (see :meth:`SimClock.hold`). Actors due at the same instant are woken one at a time, in order of
``priority`` then arrival, and the next one is woken only once the previous one sleeps again. Work that
happens inside an actor's turn (socket I/O included) therefore happens at a well-defined virtual time,
which makes runs with the same seed identical whatever the speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol


class Clock(Protocol):
    """What the controller and the park need from time."""

    def now(self) -> datetime:
        """Current time, timezone-aware."""
        ...

    async def sleep_until(
        self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None
    ) -> None:
        """Return at ``when`` or as soon as ``wake`` is set, whichever comes first."""
        ...

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep simulated time from advancing while work (a solve, say) is in flight."""
        ...

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` as an actor from now on, before it first sleeps."""
        ...


class WallClock:
    """Real time in the site's timezone."""

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz

    def now(self) -> datetime:
        return datetime.now(self._tz)

    async def sleep_until(
        self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None
    ) -> None:
        delay = (when - self.now()).total_seconds()
        if wake is None:
            await asyncio.sleep(max(0.0, delay))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, delay))

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield

    def adopt(self, task: asyncio.Task[Any]) -> None:
        return None


@dataclass(order=True)
class _Sleeper:
    when: datetime
    priority: int
    seq: int
    task: asyncio.Task[object] = field(compare=False)
    fut: asyncio.Future[None] = field(compare=False)
    wake: asyncio.Event | None = field(compare=False, default=None)


class SimClock:
    """Virtual time that advances when every actor sleeps.

    ``speed`` is the ratio of virtual to wall time; ``None`` runs as fast as possible.
    """

    def __init__(self, start: datetime, speed: float | None = None, *, paused: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive, or None for as fast as possible")
        self._now = start
        self._speed = speed
        self._sleepers: dict[asyncio.Task[object], _Sleeper] = {}
        self._actors: set[asyncio.Task[object]] = set()
        self._holds = 0
        self._seq = itertools.count()
        self._kick: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._anchor: tuple[float, datetime] | None = None
        self._paused = paused

    def resume(self) -> None:
        """Let time run (a clock created ``paused`` stands still while a simulation is set up)."""
        self._paused = False
        self._poke()

    def adopt(self, task: asyncio.Task[Any]) -> None:
        if task not in self._actors and not task.done():
            self._actors.add(task)
            task.add_done_callback(self._actor_done)

    @property
    def speed(self) -> float | None:
        return self._speed

    def now(self) -> datetime:
        return self._now

    async def sleep_until(
        self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None
    ) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - only outside a running loop
            raise RuntimeError("sleep_until must be awaited from a task")
        self.adopt(task)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._sleepers[task] = _Sleeper(max(when, self._now), priority, next(self._seq), task, fut, wake)
        self._ensure_runner()
        wake_task: asyncio.Task[bool] | None = None
        try:
            if wake is None:
                await fut
            else:
                wake_task = asyncio.ensure_future(wake.wait())
                await asyncio.wait({fut, wake_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleepers.pop(task, None)
            if wake_task is not None and not wake_task.done():
                wake_task.cancel()
            if not fut.done():
                fut.cancel()
            self._poke()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            self._poke()

    async def aclose(self) -> None:
        """Stop the scheduler task; a clock used inside a longer-lived loop must not leave it pending."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def advance(self, to: datetime) -> None:
        """Let time run to ``to`` (convenient for tests and for a driver with nothing else to do)."""
        await self.sleep_until(to, priority=1_000_000)

    # -- scheduler -------------------------------------------------------------------------------
    def _actor_done(self, task: asyncio.Task[object]) -> None:
        self._actors.discard(task)
        self._sleepers.pop(task, None)
        self._poke()

    def _poke(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _ensure_runner(self) -> None:
        if self._kick is None:
            self._kick = asyncio.Event()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="sim-clock")
        self._kick.set()

    def _can_advance(self) -> bool:
        live = {t for t in self._actors if not t.done()}
        woken = any(s.wake is not None and s.wake.is_set() for s in self._sleepers.values())
        return (
            not self._paused
            and self._holds == 0
            and not woken
            and bool(self._sleepers)
            and len(self._sleepers) >= len(live)
        )

    def _wall_deadline(self, when: datetime) -> float:
        assert self._speed is not None
        if self._anchor is None:
            self._anchor = (time.monotonic(), self._now)
        wall0, virt0 = self._anchor
        return wall0 + (when - virt0).total_seconds() / self._speed

    async def _run(self) -> None:
        assert self._kick is not None
        while True:
            self._kick.clear()
            if not self._can_advance():
                await self._kick.wait()
                continue
            nxt = min(self._sleepers.values())
            if self._speed is not None and nxt.when > self._now:
                delay = self._wall_deadline(nxt.when) - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), timeout=delay)
                    continue  # re-evaluate: someone may have woken or a new sleeper arrived
            # yield once so that callbacks already queued (a message just received) run first
            await asyncio.sleep(0)
            if not self._can_advance() or min(self._sleepers.values()) is not nxt:
                continue
            self._now = max(self._now, nxt.when)
            del self._sleepers[nxt.task]
            if not nxt.fut.done():
                nxt.fut.set_result(None)


class ScaledClock:
    """Wall time run ``speed`` times faster from an agreed instant: ``start`` at ``anchor_unix_s``.

    now = start + speed x (time.time() - anchor_unix_s). Two processes given the same three numbers
    agree on the time without talking to each other, which is what a drill needs that kills a real
    controller process in front of a simulated park (:mod:`sim.kill_drill`). Unlike :class:`SimClock`
    nobody waits for anybody: a slow actor simply falls behind, as on a real site.
    """

    def __init__(self, start: datetime, anchor_unix_s: float, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock start must be timezone-aware")
        if not speed > 0 or speed == float("inf"):
            raise ValueError("ScaledClock speed must be a positive finite factor")
        self._start_utc = start.astimezone(UTC)  # arithmetic in UTC: right across DST changes
        self._tz = start.tzinfo
        self._anchor = float(anchor_unix_s)
        self._speed = float(speed)

    @property
    def start(self) -> datetime:
        return self._start_utc.astimezone(self._tz)

    @property
    def anchor_unix_s(self) -> float:
        return self._anchor

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self.at_wall(time.time())

    def at_wall(self, unix_s: float) -> datetime:
        """The clock's time at wall instant ``unix_s``."""
        return (self._start_utc + timedelta(seconds=self._speed * (unix_s - self._anchor))).astimezone(self._tz)

    def wall_at(self, when: datetime) -> float:
        """The wall instant (Unix seconds) at which the clock shows ``when``."""
        return self._anchor + (when - self._start_utc).total_seconds() / self._speed

    async def sleep_until(
        self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None
    ) -> None:
        # the event loop sleeps on its monotonic clock and Unix seconds round to a few µs of scaled time:
        # sleep again until ``now`` itself has reached ``when``, so a cycle due at 16:00 never sees 15:59:59.99999
        while (remaining_s := (when - self.now()).total_seconds()) > 0:
            delay = remaining_s / self._speed
            if wake is None:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
            if wake.is_set():
                return

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield

    def adopt(self, task: asyncio.Task[Any]) -> None:
        return None


def ceil_to(t: datetime, period: timedelta) -> datetime:
    """The first instant at or after ``t`` that is a whole multiple of ``period`` since midnight."""
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    n = -((midnight - t) // period)
    return midnight + n * period
