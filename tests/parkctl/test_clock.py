"""The simulated clock: virtual time moves only when every actor sleeps, in a fixed order."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from parkctl.clock import SimClock, WallClock, ceil_to

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 0, 0, tzinfo=TZ)


async def _ticker(clock: SimClock, name: str, period_s: float, n: int, log: list[tuple[float, str]],
                  priority: int) -> None:
    t = T0
    for _ in range(n):
        t += timedelta(seconds=period_s)
        await clock.sleep_until(t, priority=priority)
        log.append(((clock.now() - T0).total_seconds(), name))


async def test_actors_interleave_in_time_then_priority_order() -> None:
    clock = SimClock(T0)
    log: list[tuple[float, str]] = []
    await asyncio.gather(
        _ticker(clock, "ctrl", 3, 4, log, priority=50),
        _ticker(clock, "park", 1, 12, log, priority=0),
    )
    times = [t for t, _ in log]
    assert times == sorted(times)
    # at 3, 6, 9, 12 s both are due: the park (priority 0) always goes first
    for t in (3.0, 6.0, 9.0, 12.0):
        at_t = [name for tt, name in log if tt == t]
        assert at_t == ["park", "ctrl"]
    assert clock.now() == T0 + timedelta(seconds=12)


async def test_time_does_not_move_while_an_actor_is_busy() -> None:
    clock = SimClock(T0)
    seen: list[datetime] = []
    release = asyncio.Event()

    async def busy() -> None:
        await clock.sleep_until(T0 + timedelta(seconds=1))
        await release.wait()  # e.g. waiting for a socket: virtual time must stand still
        seen.append(clock.now())

    async def other() -> None:
        await clock.sleep_until(T0 + timedelta(seconds=1), priority=200)
        await clock.sleep_until(T0 + timedelta(seconds=100))
        seen.append(clock.now())

    task_busy = asyncio.create_task(busy())
    task_other = asyncio.create_task(other())
    for _ in range(50):
        await asyncio.sleep(0)
    assert clock.now() == T0 + timedelta(seconds=1)
    release.set()
    await asyncio.gather(task_busy, task_other)
    assert seen == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=100)]


async def test_hold_blocks_advance_until_released() -> None:
    clock = SimClock(T0)

    async def sleeper() -> datetime:
        await clock.sleep_until(T0 + timedelta(hours=1))
        return clock.now()

    async with clock.hold():
        task = asyncio.create_task(sleeper())
        for _ in range(50):
            await asyncio.sleep(0)
        assert clock.now() == T0
    assert await task == T0 + timedelta(hours=1)


async def test_wake_event_returns_early_at_current_virtual_time() -> None:
    clock = SimClock(T0)
    wake = asyncio.Event()

    async def waiter() -> datetime:
        await clock.sleep_until(T0 + timedelta(hours=5), wake=wake)
        return clock.now()

    async def waker() -> None:
        await clock.sleep_until(T0 + timedelta(minutes=10))
        wake.set()

    result, _ = await asyncio.gather(waiter(), waker())
    assert result == T0 + timedelta(minutes=10)


async def test_same_program_same_trace_at_different_speeds() -> None:
    async def trace(speed: float | None) -> list[tuple[float, str]]:
        clock = SimClock(T0, speed=speed)
        log: list[tuple[float, str]] = []
        await asyncio.gather(
            _ticker(clock, "a", 0.5, 6, log, 1), _ticker(clock, "b", 0.75, 4, log, 2)
        )
        return log

    assert await trace(None) == await trace(100.0)


def test_rejects_naive_start_and_bad_speed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="speed"):
        SimClock(T0, speed=0)


async def test_wall_clock_is_aware_and_wakes_on_event() -> None:
    clock = WallClock(TZ)
    assert clock.now().tzinfo is not None
    wake = asyncio.Event()
    wake.set()
    await asyncio.wait_for(clock.sleep_until(clock.now() + timedelta(hours=1), wake=wake), 1.0)


def test_ceil_to_period_boundaries() -> None:
    t = datetime(2026, 7, 15, 10, 7, 31, tzinfo=TZ)
    assert ceil_to(t, timedelta(minutes=15)) == datetime(2026, 7, 15, 10, 15, tzinfo=TZ)
    assert ceil_to(t.replace(minute=15, second=0), timedelta(minutes=15)) == t.replace(minute=15, second=0)


async def test_paused_clock_stands_still_until_resumed() -> None:
    clock = SimClock(T0, paused=True)
    task = asyncio.create_task(clock.sleep_until(T0 + timedelta(hours=1)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert clock.now() == T0 and not task.done()
    clock.resume()
    await task
    assert clock.now() == T0 + timedelta(hours=1)


async def test_adopted_task_holds_time_before_its_first_sleep() -> None:
    clock = SimClock(T0)
    gate = asyncio.Event()
    seen: list[datetime] = []

    async def late_starter() -> None:
        await gate.wait()  # busy with set-up: time must wait for it
        seen.append(clock.now())
        await clock.sleep_until(T0 + timedelta(seconds=5))

    task = asyncio.create_task(late_starter())
    clock.adopt(task)
    sleeper = asyncio.create_task(clock.sleep_until(T0 + timedelta(seconds=10)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert clock.now() == T0
    gate.set()
    await asyncio.gather(task, sleeper)
    assert seen == [T0]
    assert clock.now() == T0 + timedelta(seconds=10)
