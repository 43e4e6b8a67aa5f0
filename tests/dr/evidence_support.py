"""Helpers for the evidence tests (baselines, performance, ledger, reports): history rows and events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from controller.cycle import CycleReport
from controller.history import INTERVAL_US, Interval, to_us
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from dr.baseline import Baseline, slot_grid
from dr.event import DrAck, DrEventSpec, DrInterval
from dr.evidence import Evidence
from dr.ledger import ActiveEvent, DrLedger
from dr.persist import DrRecord, save_record
from drivers.capabilities import BatteryReading, LoadReading, MeterReading

TZ = ZoneInfo("Asia/Shanghai")
Q = timedelta(minutes=15)
START = datetime(2026, 7, 15, 10, 0, tzinfo=TZ)
END = START + timedelta(hours=1)
QUIET = StoreSettings(checkpoint_s=None)
STEP = timedelta(seconds=10)


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


def flat_baseline(kw: float = 500.0) -> Baseline:
    slots = slot_grid(START, END)
    return Baseline("five_day", slots, (kw,) * len(slots), (), 1.0, ())


def report(ts: datetime) -> CycleReport:
    """The park answering from 10:00: 400 kW import instead of 500, battery +50 kW, chiller (80 kW) shed."""
    on = START <= ts < END
    snap = Snapshot(ts=ts, meter=MeterReading(ts, 400.0 if on else 500.0),
                    batteries={"b1": BatteryReading(ts, 50.0 if on else 0.0, 60, 1000, 500, 500)},
                    loads={"chiller": LoadReading(ts, 0.0 if on else 80.0, running=not on)})  # fmt: skip
    return CycleReport(ts, snap, Setpoints(load_shed={"chiller": on}), (), (), {}, 0.001, False)


def closed(ts: datetime, kw: float, covered: float = 1.0) -> Interval:
    """A closed quarter-hour at ``ts`` with mean grid power ``kw`` over ``covered`` of its 900 s."""
    cov = round(INTERVAL_US * covered)
    e = kw * cov / 3.6e9
    return Interval(to_us(ts), samples=1, covered_us=cov, import_kwh=max(e, 0.0), export_kwh=max(-e, 0.0), closed=True)


def history(first: date, last: date, kw: Callable[[datetime], float]) -> list[Interval]:
    """Every quarter-hour of the local days ``first`` .. ``last``, ``kw(slot start)`` each."""
    out = []
    t = datetime.combine(first, datetime.min.time(), TZ)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), TZ)
    while t < end:
        out.append(closed(t, kw(t)))
        t += Q
    return out


def event(start: datetime, end: datetime, kind: str = "reduction", value_kw: float = 100.0, eid: str = "ev1",
          cancelled: bool = False) -> DrEventSpec:  # fmt: skip
    iv = DrInterval(start, end, "reduction" if kind == "reduction" else "import_cap", value_kw)
    return DrEventSpec(eid, "jiangsu", 0, 0, "DAY_AHEAD", start - timedelta(days=1), (iv,), cancelled)


def run(db: Path, t0: datetime, t1: datetime, events: Sequence[ActiveEvent], *, ledger_until: datetime | None = None,
        seen: Any = None) -> None:  # fmt: skip
    """Cycles every 10 s over [t0, t1) into a fresh Store and ledger on ``db`` (the ledger stops early if asked)."""
    clock = Clock(t0)
    with Store.open(db, clock, QUIET) as store, Evidence.open(db) as ev:
        ledger = DrLedger(store, ev, lambda now: [e for e in events if now < e.spec.end], nominal_kw={"chiller": 80.0},
                          observers=[seen] if seen else [])  # fmt: skip
        t = t0
        while t < t1:
            clock.t = t
            r = report(t)
            store.on_cycle(r)  # the Store first: it closes the quarter-hour the ledger then reads
            if ledger_until is None or t < ledger_until:
                ledger.on_cycle(r)
            t += STEP


def record(db: Path, spec: DrEventSpec, state: str, opt_in: bool = True, ended: datetime | None = None) -> None:
    """The manager's row of ``spec`` (as dr.persist writes it)."""
    ack = DrAck(spec.event_id, spec.modification_number, "rejected" if state == "rejected" else "accepted", opt_in,
                "ok", 150.0, spec.created)  # fmt: skip
    with Store.open(db, Clock(spec.created), QUIET) as store:
        save_record(store, DrRecord(spec, ack, state, ended), spec.created)  # type: ignore[arg-type]


def sample_db(db: Path) -> Path:
    """ev1 run and assessed (met: 100 of 100 kWh) and completed; ev2/bad rejected."""
    spec = event(START, END, "reduction", 100.0)
    m = timedelta(minutes=1)
    run(db, START - m, END + 5 * m, [ActiveEvent(spec, flat_baseline(), 0.8, 3.0)])
    record(db, spec, "completed")
    record(db, event(START + timedelta(days=1), END + timedelta(days=1), eid="ev2/bad"), "rejected", opt_in=False)
    return db
