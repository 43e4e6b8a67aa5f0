"""The scaled clock two processes share in a kill drill, and ``parkctl run --sim-clock`` that builds it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.run import SimClockSpec, parse_sim_clock
from parkctl.cli import build_parser
from parkctl.clock import ScaledClock

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 15, 45, tzinfo=TZ)
ANCHOR = 1_800_000_000.0


def test_the_time_is_a_function_of_the_wall_instant_alone() -> None:
    a, b = ScaledClock(T0, ANCHOR, 40.0), ScaledClock(T0, ANCHOR, 40.0)
    assert a.at_wall(ANCHOR) == T0
    assert a.at_wall(ANCHOR + 1.5) == b.at_wall(ANCHOR + 1.5) == T0 + timedelta(seconds=60)
    assert a.at_wall(ANCHOR - 0.25) == T0 - timedelta(seconds=10)  # before the anchor: before the start
    assert a.at_wall(ANCHOR).tzinfo is TZ
    for t in (T0, T0 + timedelta(minutes=50), T0 - timedelta(seconds=3)):  # Unix seconds in a float: µs apart
        assert abs((a.at_wall(a.wall_at(t)) - t).total_seconds()) < 1e-4


def test_two_clocks_with_the_same_numbers_agree_on_now() -> None:
    anchor = time.time()
    a, b = ScaledClock(T0, anchor, 60.0), ScaledClock(T0, anchor, 60.0)
    t_a = a.now()
    t_b = b.now()
    t_a2 = a.now()
    assert t_a <= t_b <= t_a2  # one time line, read three times in order
    assert abs((t_a - T0).total_seconds()) < 60.0 * 5  # and it is the drill's, not the wall's


def test_arithmetic_is_absolute_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)  # clocks jump from 02:00 to 03:00
    clock = ScaledClock(start, ANCHOR, 3600.0)
    one_hour_later = clock.at_wall(ANCHOR + 1.0)
    assert one_hour_later.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=1)
    assert (one_hour_later.hour, one_hour_later.minute) == (3, 30)


async def test_sleep_until_does_not_return_early() -> None:
    clock = ScaledClock(T0, time.time(), 1000.0)
    target = clock.now() + timedelta(seconds=100)  # 0.1 s of wall time
    await clock.sleep_until(target)
    assert clock.now() >= target


async def test_sleep_until_a_past_instant_returns_at_once() -> None:
    clock = ScaledClock(T0, time.time(), 1.0)
    before = time.perf_counter()
    await clock.sleep_until(T0 - timedelta(hours=1))
    assert time.perf_counter() - before < 1.0


async def test_wake_ends_the_sleep_early() -> None:
    clock = ScaledClock(T0, time.time(), 1.0)
    wake = asyncio.Event()
    far = clock.now() + timedelta(days=1)
    sleeper = asyncio.create_task(clock.sleep_until(far, wake=wake))
    await asyncio.sleep(0)
    assert not sleeper.done()
    wake.set()
    await asyncio.wait_for(sleeper, timeout=10)
    assert clock.now() < far
    await asyncio.wait_for(clock.sleep_until(far, wake=wake), timeout=10)  # already set: no sleep at all


async def test_hold_and_adopt_do_nothing() -> None:
    clock = ScaledClock(T0, time.time(), 10.0)
    task = asyncio.create_task(asyncio.sleep(0))
    clock.adopt(task)
    async with clock.hold():
        pass
    await task


@pytest.mark.parametrize("speed", [0.0, -1.0, float("inf"), float("nan")])
def test_a_speed_must_be_positive_and_finite(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(T0, ANCHOR, speed)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ScaledClock(datetime(2026, 7, 15, 15, 45), ANCHOR, 40.0)


def test_sim_clock_spec_round_trips_through_its_text() -> None:
    spec = SimClockSpec(T0, 1_800_000_000.25, 40.0)
    assert parse_sim_clock(str(spec)) == spec
    assert parse_sim_clock("2026-07-15T15:45:00+08:00@1800000000:60x").speed == 60.0
    clock = spec.clock(ZoneInfo("UTC"))
    assert clock.at_wall(1_800_000_000.25) == T0  # the same instant, shown in the site's zone
    assert clock.at_wall(1_800_000_000.25).tzinfo == ZoneInfo("UTC")


@pytest.mark.parametrize(("text", "field"), [
    ("2026-07-15T15:45:00+08:00", "START@ANCHOR_UNIX_S:SPEED"),
    ("2026-07-15T15:45:00+08:00@1800000000", "':SPEED'"),
    ("yesterday@1800000000:40", "START must be an ISO-8601 time"),
    ("2026-07-15T15:45:00@1800000000:40", "START must carry a UTC offset"),
    ("2026-07-15T15:45:00+08:00@soon:40", "ANCHOR_UNIX_S"),
    ("2026-07-15T15:45:00+08:00@-5:40", "ANCHOR_UNIX_S"),
    ("2026-07-15T15:45:00+08:00@1800000000:fast", "SPEED"),
    ("2026-07-15T15:45:00+08:00@1800000000:0", "SPEED"),
])  # fmt: skip
def test_sim_clock_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("(", r"\(")) as err:
        parse_sim_clock(text)
    assert field in str(err.value)


def test_parkctl_run_takes_sim_clock_and_stays_unchanged_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--config", "c.yaml"])
    assert args.sim_clock is None
    args = parser.parse_args(["run", "--config", "c.yaml", "--sim-clock", "2026-07-15T15:45:00+08:00@1800000000:40"])
    assert args.sim_clock == SimClockSpec(T0, 1_800_000_000.0, 40.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--config", "c.yaml", "--sim-clock", "2026-07-15T15:45:00+08:00@1800000000:-2"])
    assert "argument --sim-clock: SPEED must be a positive finite factor" in capsys.readouterr().err
