"""The cycle's phases with in-memory devices: failures are contained, writes are change-only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from controller.cycle import CycleSettings, Runtime
from controller.devices import DeviceSet
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, CommandOutcome, LoadReading, MeterReading, PvReading
from parkctl.clock import SimClock
from parkctl.errors import DeviceError

T0 = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass
class Meter:
    clock: SimClock
    id: str = "meter"
    p_kw: float = 100.0
    fail: bool = False
    lag_s: float = 0.0

    async def read_meter(self) -> MeterReading:
        if self.fail:
            raise DeviceError("meter: no answer")
        return MeterReading(self.clock.now() - timedelta(seconds=self.lag_s), self.p_kw)


@dataclass
class Pv:
    clock: SimClock
    id: str = "pv"
    limits: list[float | None] = field(default_factory=list)
    fail_writes: int = 0

    async def read_pv(self) -> PvReading:
        return PvReading(self.clock.now(), 500.0, 1000.0, None)

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        self.limits.append(limit_kw)
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise DeviceError("pv: write timed out")


@dataclass
class Battery:
    clock: SimClock
    id: str = "bat"
    writes: list[float] = field(default_factory=list)
    fail_reads: bool = False

    async def read_battery(self) -> BatteryReading:
        if self.fail_reads:
            raise DeviceError("bat: timeout")
        return BatteryReading(self.clock.now(), 0.0, 50.0, 1000.0, 500.0, 500.0)

    async def set_battery_power(self, p_kw: float) -> None:
        self.writes.append(p_kw)


@dataclass
class Load:
    clock: SimClock
    id: str = "chiller"
    accept: bool = True
    commands: list[str] = field(default_factory=list)
    running: bool = True

    def latest_load(self) -> LoadReading | None:
        return LoadReading(self.clock.now(), 200.0 if self.running else 0.0, self.running)

    async def shed(self) -> CommandOutcome:
        self.commands.append("shed")
        self.running = not self.accept
        return CommandOutcome(acked=True, accepted=self.accept, reason="" if self.accept else "min on time")

    async def restore(self) -> CommandOutcome:
        self.commands.append("restore")
        self.running = True
        return CommandOutcome(acked=True, accepted=True)


def fixed(setpoints: Setpoints):  # type: ignore[no-untyped-def]
    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        return setpoints

    return decide


def make(decide, clock: SimClock, **kw):  # type: ignore[no-untyped-def]
    meter, pv, bat, load = Meter(clock), Pv(clock), Battery(clock), Load(clock)
    devices = DeviceSet.discover([meter, pv, bat, load])
    settings = CycleSettings(period_s=1.0, battery_resend_s=5.0, pv_resend_s=60.0, max_age_s=10.0, **kw)
    return Runtime(devices, decide, clock, settings), meter, pv, bat, load


async def test_writes_only_changes_and_resends_battery_before_watchdog() -> None:
    clock = SimClock(T0)
    want = Setpoints(pv_limit_kw={"pv": 800.0}, battery_p_kw={"bat": -200.0}, load_shed={"chiller": False})
    rt, _, pv, bat, load = make(fixed(want), clock)
    await rt.run(until=T0 + timedelta(seconds=12))
    assert rt.stats.cycles == 12
    assert pv.limits == [800.0]  # written once: unchanged afterwards, resend only after 60 s
    assert bat.writes == [-200.0, -200.0, -200.0]  # at 0 s, 5 s and 10 s: before a device watchdog
    assert load.commands == []  # already running: nothing to say


async def test_a_write_after_a_failed_one_is_sent_once_more() -> None:
    """A timed-out write may land late, over the newer one: the newer one goes out again a cycle later."""
    clock = SimClock(T0)
    want = Setpoints(pv_limit_kw={"pv": 800.0})
    rt, _, pv, _, _ = make(fixed(want), clock)
    pv.fail_writes = 2
    await rt.run(until=T0 + timedelta(seconds=6))
    # fails at 0 s and 1 s, lands at 2 s, confirmed at 3 s, then left alone until the 60 s re-send
    assert pv.limits == [800.0] * 4
    assert rt.stats.write_errors["pv"] == 2


async def test_failing_device_is_invalidated_counted_and_others_still_written() -> None:
    clock = SimClock(T0)
    seen: list[Snapshot] = []

    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        seen.append(snap)
        return Setpoints(pv_limit_kw={"pv": 700.0})

    rt, _, pv, bat, _ = make(decide, clock)
    bat.fail_reads = True
    report = await rt.run_cycle()
    assert seen[0].batteries == {"bat": None}
    assert seen[0].meter is not None
    assert rt.stats.read_errors["bat"] == 1
    assert any("bat" in e for e in report.errors)
    assert pv.limits == [700.0]


async def test_stale_meter_reading_is_dropped() -> None:
    clock = SimClock(T0)
    seen: list[Snapshot] = []

    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        seen.append(snap)
        return previous

    rt, meter, *_ = make(decide, clock)
    meter.lag_s = 11.0  # older than max_age_s = 10
    await rt.run_cycle()
    assert seen[0].meter is None


async def test_decide_exception_keeps_previous_setpoints_and_cycle_goes_on() -> None:
    clock = SimClock(T0)

    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        raise ZeroDivisionError("bug")

    rt, *_ = make(decide, clock)
    report = await rt.run_cycle()
    assert rt.stats.decide_errors == 1
    assert report.setpoints == rt.writer.commanded
    await rt.run_cycle()
    assert rt.stats.cycles == 2


async def test_refused_shed_is_not_repeated_every_cycle() -> None:
    clock = SimClock(T0)
    want = Setpoints(load_shed={"chiller": True})
    rt, _, _, _, load = make(fixed(want), clock)
    load.accept = False
    await rt.run(until=T0 + timedelta(seconds=30))
    assert load.commands == ["shed"]  # backed off after the refusal
    assert rt.writer.refusals["chiller"] == 1
    assert rt.writer.commanded.load_shed["chiller"] is False


async def test_write_records_tell_what_was_attempted() -> None:
    clock = SimClock(T0)
    want = Setpoints(pv_limit_kw={"pv": None}, battery_p_kw={"bat": 50.0}, load_shed={"chiller": True})
    rt, *_ = make(fixed(want), clock)
    report = await rt.run_cycle()
    kinds = {(w.device, w.kind, w.value, w.ok) for w in report.writes}
    assert ("bat", "battery_p_kw", 50.0, True) in kinds
    assert ("chiller", "load_shed", True, True) in kinds
    assert all(w.ts == T0 for w in report.writes)


async def test_the_snapshot_tells_since_when_a_load_is_held_shed() -> None:
    clock = SimClock(T0)
    seen: list[Snapshot] = []

    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        seen.append(snap)
        return Setpoints(load_shed={"chiller": snap.ts >= T0 + timedelta(seconds=2)})

    rt, *_ = make(decide, clock)
    await rt.run(until=T0 + timedelta(seconds=5))
    assert [s.shed_since for s in seen[:3]] == [{}, {}, {}]
    # told to go at 2 s: the cycles after it know since when
    assert all(s.shed_since == {"chiller": T0 + timedelta(seconds=2)} for s in seen[3:])
