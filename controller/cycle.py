"""The controller's fixed cycle: read -> process image -> decide -> write -> publish.

One failing device, a slow write or an exception in decide never stops the cycle: the failure is
counted, the affected value is invalidated, and the next cycle starts on time. Decide is plain
synchronous code (see :mod:`controller.rules`); everything with I/O lives here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from controller.devices import DeviceSet
from controller.guard import WriteGuard
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.writer import Journal, SetpointWriter, WriteRecord
from parkctl.clock import Clock, ceil_to

log = logging.getLogger(__name__)
T = TypeVar("T")

Decide = Callable[[Snapshot, Setpoints], Setpoints]


class CycleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    period_s: float = Field(default=1.0, gt=0, le=900)
    read_timeout_s: float = Field(default=0.5, gt=0, description="per-device, wall clock")
    write_timeout_s: float = Field(default=1.0, gt=0, description="per-device, wall clock")
    max_age_s: float = Field(default=30.0, gt=0, description="older readings count as stale")
    battery_resend_s: float = Field(default=20.0, gt=0, description="re-send before the device watchdog")
    pv_resend_s: float = Field(default=60.0, gt=0)
    deadband_kw: float = Field(default=5.0, ge=0, description="smaller changes are not written")


@dataclass(frozen=True, slots=True)
class CycleReport:
    """Everything one cycle saw and did; observers publish it."""

    ts: datetime
    snapshot: Snapshot
    setpoints: Setpoints
    writes: tuple[WriteRecord, ...]
    errors: tuple[str, ...]
    phase_s: dict[str, float]
    work_s: float
    overrun: bool
    decide_failed: bool = False


class Observer(Protocol):
    def on_cycle(self, report: CycleReport) -> None: ...


@dataclass
class CycleStats:
    cycles: int = 0
    overruns: int = 0
    decide_errors: int = 0
    last_publish_s: float = 0.0
    read_errors: Counter[str] = field(default_factory=Counter)
    write_errors: Counter[str] = field(default_factory=Counter)


class Runtime:
    """Runs the cycle on the injected clock until stopped."""

    def __init__(
        self,
        devices: DeviceSet,
        decide: Decide,
        clock: Clock,
        settings: CycleSettings,
        observers: Sequence[Observer] = (),
        guard: WriteGuard | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.devices = devices
        self.decide = decide
        self.clock = clock
        self.settings = settings
        self.observers = list(observers)
        self.stats = CycleStats()
        self.writer = SetpointWriter(devices, clock, settings, self.stats.write_errors, guard, journal)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, until: datetime | None = None) -> None:
        """Cycle on period boundaries until :meth:`stop` or ``until``."""
        period = timedelta(seconds=self.settings.period_s)
        next_at = ceil_to(self.clock.now(), period)
        while not self._stop.is_set() and (until is None or next_at < until):
            await self.clock.sleep_until(next_at, priority=50, wake=self._stop)
            if self._stop.is_set():
                break
            await self.run_cycle()
            next_at += period
            now = self.clock.now()
            if next_at <= now:  # fell behind: skip missed cycles rather than bunching them
                next_at = ceil_to(now + timedelta(microseconds=1), period)

    async def run_cycle(self) -> CycleReport:
        started = time.perf_counter()
        phases: dict[str, float] = {}
        errors: list[str] = []
        ts = self.clock.now()

        t0 = time.perf_counter()
        snap = await self._read(ts, errors)
        phases["read"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self.writer.reconcile_loads(snap)
        snap = replace(snap, shed_since=self.writer.shed_since())
        decide_failed = False
        try:
            setpoints = self.decide(snap, self.writer.commanded)
        except Exception as exc:  # a bug in decide must not stop the park's control
            self.stats.decide_errors += 1
            log.exception("decide failed; keeping previous setpoints")
            errors.append(f"decide: {exc!r}")
            setpoints = self.writer.commanded
            decide_failed = True
        phases["decide"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        writes = await self.writer.write(setpoints, errors)
        phases["write"] = time.perf_counter() - t0

        work = time.perf_counter() - started
        overrun = work > self.settings.period_s
        self.stats.cycles += 1
        if overrun:
            self.stats.overruns += 1
            log.warning("cycle overran: %.3f s of work for a %.3f s period", work, self.settings.period_s)
        phases["publish"] = self.stats.last_publish_s  # this cycle's publish is still to come
        report = CycleReport(ts, snap, setpoints, writes, tuple(errors), dict(phases), work, overrun, decide_failed)
        t0 = time.perf_counter()
        for obs in self.observers:
            try:
                obs.on_cycle(report)
            except Exception:
                log.exception("observer %r failed", obs)
        self.stats.last_publish_s = time.perf_counter() - t0
        return report

    # -- read ------------------------------------------------------------------------------------
    async def _guarded(self, name: str, call: Awaitable[T], errors: list[str]) -> T | None:
        try:
            async with asyncio.timeout(self.settings.read_timeout_s):  # cheaper than wait_for on 3.11
                return await call
        except Exception as exc:
            self.stats.read_errors[name] += 1
            errors.append(f"read {name}: {exc!r}")
            return None

    def _fresh(self, reading: T | None, ts: datetime) -> T | None:
        if reading is None:
            return None
        age = (ts - reading.ts).total_seconds()  # type: ignore[attr-defined]
        return reading if age <= self.settings.max_age_s else None

    async def _read(self, ts: datetime, errors: list[str]) -> Snapshot:
        d = self.devices
        meter_task = self._guarded("meter", d.meter.read_meter(), errors) if d.meter else None
        pv_ids, bat_ids = list(d.pv), list(d.storage)
        results = await asyncio.gather(
            *([meter_task] if meter_task else []),
            *(self._guarded(pid, d.pv[pid].read_pv(), errors) for pid in pv_ids),
            *(self._guarded(bid, d.storage[bid].read_battery(), errors) for bid in bat_ids),
        )
        meter = results[0] if meter_task else None
        rest = results[1:] if meter_task else results
        pv = {pid: self._fresh(r, ts) for pid, r in zip(pv_ids, rest[: len(pv_ids)], strict=True)}
        bats = {bid: self._fresh(r, ts) for bid, r in zip(bat_ids, rest[len(pv_ids) :], strict=True)}
        loads = {lid: self._fresh(load.latest_load(), ts) for lid, load in d.loads.items()}
        return Snapshot(ts=ts, meter=self._fresh(meter, ts), pv=pv, batteries=bats, loads=loads)
