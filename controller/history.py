"""What the store records each cycle: the cycles row, the writes and quarter-hour energy aggregates.

Demand-response baselines are computed from these intervals, so the rule is exact and written down:

* **Left rectangle (sample and hold).** A sample's powers hold from its timestamp until the next
  sample, for at most ``max_hold_s``; a longer silence is a gap, counted as uncovered seconds and
  never guessed. Left rather than trapezoid because it is what the controller acted on (a cycle's
  view stands until the next cycle) and because nothing is interpolated across a gap or an outage.
* A sample without a meter reading carries no powers: it ends the previous hold and starts none.
* **Closed once.** An interval can still receive energy until a sample at or after its end arrives;
  that sample closes it, and every empty interval of a gap is emitted too (0 samples, 0 s covered),
  so the series has no holes.
* Times are integer microseconds since the Unix epoch, so splitting at boundaries is exact.
  Boundaries are multiples of 900 s since the epoch: the local quarter-hours of any zone whose
  offset is a whole number of quarter-hours (every zone in use today, China's included).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from controller.cycle import CycleReport
from drivers.capabilities import BatteryReading

log = logging.getLogger(__name__)

INTERVAL_US = 900_000_000
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_H = 3_600_000_000


def to_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch (``ts`` must be timezone-aware)."""
    return (ts - _EPOCH) // _US


def from_us(t_us: int, tz: tzinfo | None = None) -> datetime:
    return (_EPOCH + timedelta(microseconds=t_us)).astimezone(tz or UTC)


@dataclass(frozen=True, slots=True)
class Powers:
    """One sample's site powers, in the project's sign convention (grid + import, battery + discharge)."""

    grid_kw: float
    pv_kw: float
    battery_kw: float
    load_kw: float


@dataclass(slots=True)
class Interval:
    """One quarter-hour. ``samples`` counts the valid samples taken inside it."""

    start_us: int
    samples: int = 0
    covered_us: int = 0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    pv_kwh: float = 0.0
    load_kwh: float = 0.0
    charge_kwh: float = 0.0
    discharge_kwh: float = 0.0
    max_grid_kw: float | None = None  # the highest power held at any time in the interval
    max_load_kw: float | None = None
    closed: bool = False

    @property
    def end_us(self) -> int:
        return self.start_us + INTERVAL_US

    @property
    def covered_s(self) -> float:
        return self.covered_us / 1e6

    def start(self, tz: tzinfo | None = None) -> datetime:
        return from_us(self.start_us, tz)

    def mean_grid_kw(self) -> float | None:
        """Mean grid power over the covered seconds (None when nothing is covered)."""
        h = self.covered_us / _US_PER_H
        return (self.import_kwh - self.export_kwh) / h if h else None

    def mean_load_kw(self) -> float | None:
        h = self.covered_us / _US_PER_H
        return self.load_kwh / h if h else None

    def add(self, p: Powers, dur_us: int) -> None:
        """Hold ``p`` for ``dur_us`` inside this interval."""
        h = dur_us / _US_PER_H
        if p.grid_kw >= 0:
            self.import_kwh += p.grid_kw * h
        else:
            self.export_kwh -= p.grid_kw * h
        if p.battery_kw >= 0:
            self.discharge_kwh += p.battery_kw * h
        else:
            self.charge_kwh -= p.battery_kw * h
        self.pv_kwh += p.pv_kw * h
        self.load_kwh += p.load_kw * h
        self.covered_us += dur_us
        self.max_grid_kw = p.grid_kw if self.max_grid_kw is None else max(self.max_grid_kw, p.grid_kw)
        self.max_load_kw = p.load_kw if self.max_load_kw is None else max(self.max_load_kw, p.load_kw)


def floor_us(t_us: int) -> int:
    return t_us - t_us % INTERVAL_US


class QuarterHours:
    """The aggregation state: the open interval and the last sample (what a restart must restore)."""

    def __init__(
        self,
        max_hold_s: float,
        open_interval: Interval | None = None,
        last_us: int | None = None,
        last: Powers | None = None,
    ) -> None:
        if (open_interval is None) != (last_us is None):
            raise ValueError("open interval and last sample time go together")
        self.max_hold_us = round(max_hold_s * 1e6)
        self.open = open_interval
        self.last_us = last_us
        self.last = last

    def push(self, t_us: int, powers: Powers | None) -> list[Interval] | None:
        """Add the sample taken at ``t_us``; return the intervals it closed, oldest first.

        Returns None (and changes nothing) for a sample not after the previous one: time that runs
        backwards must not make intervals overlap.
        """
        closed: list[Interval] = []
        if self.open is None or self.last_us is None:
            self.open = Interval(floor_us(t_us))
        elif t_us <= self.last_us:
            return None
        elif self.last is not None:
            a, b = self.last_us, min(t_us, self.last_us + self.max_hold_us)
            while a < b:
                end = min(b, self.open.end_us)
                self.open.add(self.last, end - a)
                a = end
                if a == self.open.end_us:
                    closed.append(self._roll())
        while self.open.end_us <= t_us:
            closed.append(self._roll())
        if powers is not None:
            self.open.samples += 1
        self.last_us, self.last = t_us, powers
        return closed

    def _roll(self) -> Interval:
        assert self.open is not None
        done = self.open
        done.closed = True
        self.open = Interval(done.end_us)
        return done


_COLS = ("start_unix, ts_start, samples, covered_s, import_kwh, export_kwh, pv_kwh, load_kwh, charge_kwh,"
         " discharge_kwh, mean_grid_kw, max_grid_kw, mean_load_kw, max_load_kw, closed")  # fmt: skip
_UPSERT_INTERVAL = (
    f"INSERT INTO history_15min ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(start_unix) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COLS.replace(" ", "").split(",")[2:])
)
_UPSERT_CURSOR = ("INSERT OR REPLACE INTO history_cursor (id, ts, t_us, grid_kw, pv_kw, battery_kw, load_kw)"
                  " VALUES (1,?,?,?,?,?,?)")  # fmt: skip
_INSERT_CYCLES = ("INSERT INTO cycles (ts, n_cycles, grid_kw, pv_kw, battery_kw, load_kw, soc_pct, work_s, overruns,"
                  " errors) VALUES (?,?,?,?,?,?,?,?,?,?)")  # fmt: skip
INSERT_SETPOINT = "INSERT INTO setpoints (ts, device, kind, value, ok) VALUES (?,?,?,?,?)"
_RESOLVE_SETPOINT = "UPDATE setpoints SET ok = ? WHERE id = ?"  # a journalled write's outcome


class CycleRecorder:
    """Writes cycles into an open transaction; its in-memory state is only valid after a commit.

    After a rollback, call :meth:`load` again: the state is then re-read from what was committed.
    """

    def __init__(self, cycle_every: int, max_hold_s: float) -> None:
        self.cycle_every = cycle_every
        self.max_hold_s = max_hold_s
        self.group: list[CycleReport] = []  # cycles waiting for their cycles row
        self.qh = QuarterHours(max_hold_s)

    def load(self, db: sqlite3.Connection) -> None:
        cur = db.execute("SELECT t_us, grid_kw, pv_kw, battery_kw, load_kw FROM history_cursor").fetchone()
        row = db.execute(f"SELECT {_COLS} FROM history_15min WHERE closed = 0").fetchone()
        if cur is None or row is None:
            self.qh = QuarterHours(self.max_hold_s)
        else:
            last = None if cur[1] is None else Powers(*cur[1:])
            self.qh = QuarterHours(self.max_hold_s, interval_from_row(row), cur[0], last)

    def write(self, db: sqlite3.Connection, r: CycleReport) -> None:
        self.group.append(r)
        if len(self.group) >= self.cycle_every:
            self.write_group(db)
        if r.writes:
            db.executemany(INSERT_SETPOINT, [(w.ts.isoformat(), w.device, w.kind,
                                               None if w.value is None else float(w.value), int(w.ok))
                                              for w in r.writes if w.row_id is None])  # fmt: skip
            db.executemany(_RESOLVE_SETPOINT, [(int(w.ok), w.row_id) for w in r.writes if w.row_id is not None])
        snap = r.snapshot
        load = snap.site_load_kw()
        p = None if snap.meter is None or load is None else Powers(snap.meter.p_kw, snap.pv_kw, snap.battery_kw, load)
        t_us = to_us(r.ts)
        closed = self.qh.push(t_us, p)
        if closed is None:
            log.warning("cycle at %s is not after the previous sample: left out of the aggregates", r.ts)
            return
        assert self.qh.open is not None
        db.executemany(_UPSERT_INTERVAL, [interval_row(iv, r.ts.tzinfo) for iv in [*closed, self.qh.open]])
        values = (None,) * 4 if p is None else (p.grid_kw, p.pv_kw, p.battery_kw, p.load_kw)
        db.execute(_UPSERT_CURSOR, (r.ts.isoformat(), t_us, *values))

    def write_group(self, db: sqlite3.Connection) -> None:
        """The cycles row for the cycles gathered so far (kW means, last SoC, worst work time, counts)."""
        g, self.group = self.group, []
        if not g:
            return
        snaps = [r.snapshot for r in g]
        socs = [s for s in (_soc(x.batteries) for x in snaps) if s is not None]
        db.execute(_INSERT_CYCLES, (
            g[0].ts.isoformat(), len(g), _mean([s.meter.p_kw if s.meter else None for s in snaps]),
            _mean([s.pv_kw for s in snaps]), _mean([s.battery_kw for s in snaps]),
            _mean([s.site_load_kw() for s in snaps]), socs[-1] if socs else None,
            max(r.work_s for r in g), sum(r.overrun for r in g), sum(len(r.errors) for r in g)))  # fmt: skip


def read_intervals(db: sqlite3.Connection, since: datetime | None, closed_only: bool) -> list[Interval]:
    start = -(2**62) if since is None else floor_us(to_us(since)) // 1_000_000
    sql = f"SELECT {_COLS} FROM history_15min WHERE start_unix >= ?" + (" AND closed = 1" if closed_only else "")
    return [interval_from_row(r) for r in db.execute(sql + " ORDER BY start_unix", (start,))]


def interval_row(iv: Interval, tz: tzinfo | None) -> tuple[Any, ...]:
    return (iv.start_us // 1_000_000, iv.start(tz).isoformat(), iv.samples, iv.covered_s, iv.import_kwh,
            iv.export_kwh, iv.pv_kwh, iv.load_kwh, iv.charge_kwh, iv.discharge_kwh, iv.mean_grid_kw(),
            iv.max_grid_kw, iv.mean_load_kw(), iv.max_load_kw, int(iv.closed))  # fmt: skip


def interval_from_row(r: tuple[Any, ...]) -> Interval:
    return Interval(
        start_us=r[0] * 1_000_000,
        samples=r[2],
        covered_us=round(r[3] * 1e6),
        import_kwh=r[4],
        export_kwh=r[5],
        pv_kwh=r[6],
        load_kwh=r[7],
        charge_kwh=r[8],
        discharge_kwh=r[9],
        max_grid_kw=r[11],
        max_load_kw=r[13],
        closed=bool(r[14]),
    )


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _soc(bats: dict[str, BatteryReading | None]) -> float | None:
    """Capacity-weighted state of charge of the batteries that could be read."""
    read = [b for b in bats.values() if b is not None and b.capacity_kwh > 0]
    cap = sum(b.capacity_kwh for b in read)
    return sum(b.soc_pct * b.capacity_kwh for b in read) / cap if cap else None
