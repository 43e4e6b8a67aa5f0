"""Durable demand-response evidence: baselines and per-quarter-hour results (store migration 2).

Its own SQLite connection to the controller's database file (the :class:`controller.store.Store`
must have opened it first: that is what creates these tables). Writes are rare (one per event and
quarter-hour) and synced at commit (synchronous=FULL): evidence for a settlement must survive a
power cut. A baseline and a slot row are written once and never changed (first write wins), so a
restarted controller cannot rewrite history. :meth:`Evidence.open_readonly` is for readers in
other threads or processes (reports, the HTTP endpoint).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.history import to_us
from dr.baseline import Baseline
from dr.event import DrEventSpec
from dr.performance import SlotResult
from dr.persist import KIND, spec_from_dict, spec_to_dict
from parkctl.errors import ParkError


class EvidenceError(ParkError):
    """The database has no demand-response tables (not migrated) or cannot be read."""


@dataclass(frozen=True, slots=True)
class StoredBaseline:
    spec: DrEventSpec
    baseline: Baseline
    threshold: float
    price_cny_per_kwh: float
    computed_ts: datetime
    stopped_ts: datetime | None


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class Evidence:
    """Reads and writes the ``dr_*`` tables; one connection, usable from one thread at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dr_intervals'").fetchone()
        if has is None:
            conn.close()
            raise EvidenceError("the database has no dr_intervals table: open it with the controller's Store first")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Evidence:
        conn = sqlite3.connect(os.fspath(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA synchronous=FULL")
        return cls(conn)

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Evidence:
        p = os.fspath(path)
        if not os.path.exists(p):
            raise EvidenceError(f"{p}: no such database")
        try:
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            return cls(conn)
        except sqlite3.Error as exc:
            raise EvidenceError(f"{p}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- baselines -------------------------------------------------------------------------------
    def save_baseline(self, spec: DrEventSpec, baseline: Baseline, *, threshold: float, price_cny_per_kwh: float,
                      computed_ts: datetime) -> bool:  # fmt: skip
        """Fix the event's baseline; False (nothing changed) when one is already stored."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT INTO dr_baselines (event_id, programme_id, method, computed_ts, adjustment, days_used_json,"
                " inputs_json, spec_json, threshold, price_cny_per_kwh) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (spec.event_id, spec.programme_id, baseline.method, computed_ts.isoformat(), baseline.adjustment,
                 _dump([d.isoformat() for d in baseline.days_used]),
                 _dump([[t.isoformat(), kw] for t, kw in baseline.inputs]), _dump(spec_to_dict(spec)),
                 threshold, price_cny_per_kwh))  # fmt: skip
            if cur.rowcount == 0:
                return False
            self._db.executemany(
                "INSERT INTO dr_baseline_slots (event_id, start_unix, ts_start, baseline_kw) VALUES (?,?,?,?)",
                [(spec.event_id, to_us(s) // 1_000_000, s.isoformat(), kw)
                 for s, kw in zip(baseline.slots, baseline.kw, strict=True)])  # fmt: skip
        return True

    def update_spec(self, spec: DrEventSpec) -> None:
        """A newer modification of a running event: judged by its intervals from now on (baseline unchanged)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE dr_baselines SET spec_json = ? WHERE event_id = ?",
                             (_dump(spec_to_dict(spec)), spec.event_id))  # fmt: skip

    def stop(self, event_id: str, ts: datetime) -> None:
        """Record that the event was cancelled at ``ts`` (slots after it are not assessed)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE dr_baselines SET stopped_ts = ? WHERE event_id = ? AND stopped_ts IS NULL",
                             (ts.isoformat(), event_id))  # fmt: skip

    def baseline(self, event_id: str) -> StoredBaseline | None:
        row = self._db.execute(
            "SELECT method, computed_ts, adjustment, days_used_json, inputs_json, spec_json, threshold,"
            " price_cny_per_kwh, stopped_ts FROM dr_baselines WHERE event_id = ?", (event_id,)).fetchone()  # fmt: skip
        if row is None:
            return None
        slots = self._db.execute("SELECT ts_start, baseline_kw FROM dr_baseline_slots WHERE event_id = ?"
                                 " ORDER BY start_unix", (event_id,)).fetchall()  # fmt: skip
        b = Baseline.from_json({"method": row[0], "slots": [s for s, _ in slots], "kw": [k for _, k in slots],
                                "adjustment": row[2], "days_used": json.loads(row[3]),
                                "inputs": json.loads(row[4])})  # fmt: skip
        iso = datetime.fromisoformat
        return StoredBaseline(spec_from_dict(json.loads(row[5])), b, row[6], row[7], iso(row[1]),
                              None if row[8] is None else iso(row[8]))  # fmt: skip

    def event_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT event_id FROM dr_baselines ORDER BY computed_ts, event_id")]

    def dr_events(self) -> list[tuple[str, str, str, str, Any]]:
        """(event id, state, received ts, updated ts, payload) of the store's ``events`` rows of kind "dr"."""
        rows = self._db.execute("SELECT external_id, state, ts, updated_ts, payload_json FROM events"
                                " WHERE kind = ? ORDER BY id", (KIND,)).fetchall()  # fmt: skip
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    # -- slots -----------------------------------------------------------------------------------
    def save_slot(self, event_id: str, r: SlotResult) -> bool:
        """Record one quarter-hour; False when it was already recorded (a slot row is final)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT INTO dr_intervals (event_id, start_unix, ts_start, baseline_kw, actual_kw, delivered_kw,"
                " delivered_kwh, committed_kw, fraction, battery_kwh, shed_kwh_json, complete)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (event_id, start_unix) DO NOTHING",
                (event_id, to_us(r.slot_start) // 1_000_000, r.slot_start.isoformat(), r.baseline_kw, r.actual_kw,
                 r.delivered_kw, r.delivered_kwh, r.committed_kw, r.fraction, r.battery_kwh,
                 _dump(dict(sorted(r.shed_kwh.items()))), int(r.complete)))  # fmt: skip
        return cur.rowcount > 0

    def slots(self, event_id: str) -> list[SlotResult]:
        rows = self._db.execute(
            "SELECT ts_start, baseline_kw, actual_kw, committed_kw, fraction, battery_kwh, shed_kwh_json, complete"
            " FROM dr_intervals WHERE event_id = ? ORDER BY start_unix", (event_id,)).fetchall()  # fmt: skip
        return [SlotResult(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), bool(r[7]))
                for r in rows]  # fmt: skip
