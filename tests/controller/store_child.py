"""A deterministic cycle writer for the store's crash tests, run as a subprocess and SIGKILLed.

``python -m tests.controller.store_child DB SIDE START STOP`` records cycles START..STOP-1; after each
committed cycle it writes the number of committed cycles to SIDE (fixed width, fsynced). The same
functions rebuild what cycle ``i`` contained, so the parent can check what survived.
"""

from __future__ import annotations

import os
import random
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from controller.cycle import CycleReport
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from controller.writer import WriteRecord
from drivers.capabilities import BatteryReading, MeterReading, PvReading

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 7, 15, 9, 58, 3, tzinfo=TZ)
SETTINGS = StoreSettings(checkpoint_s=0.05)  # checkpoint often: a kill may land inside one


class StepClock:
    """Reports the time of the cycle being recorded."""

    def __init__(self) -> None:
        self.t = START

    def now(self) -> datetime:
        return self.t


def schedule(n: int) -> list[datetime]:
    """Mostly 7 s cycles, some 45 s gaps (beyond the 30 s hold) and a few 20 min outages."""
    rng = random.Random(1234)
    out, t = [], START
    for _ in range(n):
        out.append(t)
        r = rng.random()
        step_us = 1_200_000_000 if r < 0.01 else 45_000_000 if r < 0.06 else 7_000_000 + rng.randrange(-3000, 3000)
        t += timedelta(microseconds=step_us)
    return out


def report(i: int, ts: datetime) -> CycleReport:
    rng = random.Random(i)
    meter = None if i % 11 == 5 else MeterReading(ts, rng.uniform(-300, 900))
    pv = {
        "pv1": PvReading(ts, rng.uniform(0, 500), 600, None),
        "pv2": None if i % 13 == 0 else PvReading(ts, 50, 400, None),
    }
    bats: dict[str, BatteryReading | None] = {
        "b1": BatteryReading(ts, rng.uniform(-300, 300), rng.uniform(10, 90), 1000, 500, 500)
    }
    writes = [WriteRecord(ts, "b1", "battery_p_kw", round(rng.uniform(-300, 300), 3), i % 5 != 0)]
    if i % 3 == 0:
        writes.append(WriteRecord(ts, "pv1", "pv_limit_kw", None if i % 2 else float(i % 600), True))
    if i % 17 == 0:
        writes.append(WriteRecord(ts, "chiller", "load_shed", bool(i % 2), i % 4 != 0))
    snap = Snapshot(ts=ts, meter=meter, pv=pv, batteries=bats, loads={})
    return CycleReport(ts, snap, Setpoints(), tuple(writes), ("read pv2: timeout",) if i % 13 == 0 else (),
                       {}, 0.01 + (i % 7) / 1000, i % 97 == 0)  # fmt: skip


def alarm_ops(store: Store, i: int) -> None:
    """Alarm traffic of cycle ``i``, done before its cycle is recorded."""
    if i % 7 == 0:
        store.raise_alarm("HOT", f"d{i % 3}", f"hot at cycle {i}")
    if i % 11 == 0:
        store.clear_alarm("HOT", f"d{(i // 11) % 3}")


def expected_active(n: int) -> set[tuple[str, str]]:
    """Active alarms after the alarm traffic of cycles 0..n-1."""
    active: set[tuple[str, str]] = set()
    for i in range(n):
        if i % 7 == 0:
            active.add(("HOT", f"d{i % 3}"))
        if i % 11 == 0:
            active.discard(("HOT", f"d{(i // 11) % 3}"))
    return active


def possible_active(n: int) -> list[set[tuple[str, str]]]:
    """Active alarms a kill may leave when ``n`` cycles are recorded: the alarm traffic of cycle ``n`` is
    committed op by op before its cycle row, so any prefix of it may be there too."""
    before = expected_active(n)
    states = [set(before)]
    if n % 7 == 0:
        before = before | {("HOT", f"d{n % 3}")}
        states.append(set(before))
    if n % 11 == 0:
        states.append(before - {("HOT", f"d{(n // 11) % 3}")})
    return states


def run(store: Store, clock: StepClock, times: list[datetime], start: int, stop: int, side: int | None = None) -> None:
    for i in range(start, stop):
        clock.t = times[i]
        alarm_ops(store, i)
        store.on_cycle(report(i, times[i]))
        if side is not None:
            os.pwrite(side, f"{i + 1:20d}\n".encode(), 0)
            os.fsync(side)


def main() -> None:
    db, side_path, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    clock = StepClock()
    store = Store.open(db, clock, SETTINGS)
    side = os.open(side_path, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(side, f"{start:20d}\n".encode(), 0)
    os.fsync(side)
    run(store, clock, schedule(stop), start, stop, side)
    store.close()


if __name__ == "__main__":
    main()
