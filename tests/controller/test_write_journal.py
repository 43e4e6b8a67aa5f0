"""Writes are journalled before they go out: a controller killed mid-write leaves a row for each."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from controller.cycle import CycleSettings, Runtime
from controller.devices import DeviceSet
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from parkctl.clock import SimClock
from parkctl.errors import DeviceError
from tests.controller.test_cycle import T0, Battery, Meter, Pv


def rows(db: Path) -> list[tuple[str, float | None, int]]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT device, value, ok FROM setpoints ORDER BY id").fetchall()


@dataclass
class WatchedPv(Pv):
    """Looks in the database at the moment the write arrives, as a device that applies it would."""

    db: Path | None = None
    seen: list[list[tuple[str, float | None, int]]] = field(default_factory=list)
    fail: bool = False

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        assert self.db is not None
        self.seen.append(rows(self.db))
        if self.fail:
            raise DeviceError("pv: write timed out")


async def test_a_write_is_in_the_database_before_the_device_gets_it(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    clock = SimClock(T0)
    pv = WatchedPv(clock, db=db)
    devices = DeviceSet.discover([Meter(clock), pv, Battery(clock)])
    want = Setpoints(pv_limit_kw={"pv": 800.0})
    settings = CycleSettings(period_s=1.0, battery_resend_s=5.0, pv_resend_s=60.0, max_age_s=10.0)

    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        return want if snap.ts < T0 + timedelta(seconds=1) else Setpoints(pv_limit_kw={"pv": 500.0})

    with Store.open(db, clock, StoreSettings(checkpoint_s=None)) as store:
        rt = Runtime(devices, decide, clock, settings, [store], journal=store.journal_writes)
        await rt.run_cycle()  # 800 kW goes out and takes
        pv.fail = True
        await clock.advance(T0 + timedelta(seconds=1))
        await rt.run_cycle()  # 500 kW goes out and fails
        assert pv.seen[0] == [("pv", 800.0, -1)]  # journalled, outcome not known yet, when the device got it
        assert pv.seen[1] == [("pv", 800.0, 1), ("pv", 500.0, -1)]
        assert rows(db) == [("pv", 800.0, 1), ("pv", 500.0, 0)]  # each resolved by its cycle's record
        last = store.last_commanded()
        assert last is not None and last.pv_limit_kw == {"pv": 800.0}  # what the device last accepted
