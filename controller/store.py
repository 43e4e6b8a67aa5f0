"""The controller's durable state: one embedded SQLite file, one writer.

Durability: WAL with ``synchronous=NORMAL``. A commit appends to the WAL without fsync, so a killed
process (kill -9, OOM, crash) loses nothing committed and the file is never corrupted. A power cut or
kernel crash can roll back what was committed since the WAL was last synced (at each checkpoint,
every ``checkpoint_s``): that much cycle history, setpoint log and alarm changes, never a torn file,
and the quarter-hour aggregates roll back together with the cycles they came from. FULL would fsync
at every cycle (a flash write each second, milliseconds of stall on eMMC/SD); it is used only for the
rare writes that cannot be re-derived after a power cut: plans and demand-response events.

Checkpoints run on their own connection in a background thread, so the control loop never does the
page copy and the database fsync itself; the writer checkpoints only as a safety net when the WAL
passes ~40 MB. (An fsync anywhere on the same ext4 file system can still delay a WAL append by a
journal commit: mount the data partition ``noatime,lazytime`` on the box.)

Threads: every method is safe from any thread (one lock, one connection). ``on_cycle`` belongs to
the event-loop thread and never waits for the lock: while the planner (in an executor) saves a plan,
the cycle is queued and written with the next one (other methods do wait, at most for one durable
commit). A second process opening the same file is refused (advisory lock): two writers would close
the same quarter-hour twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.resources
import json
import logging
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from controller.cycle import CycleReport
from controller.history import (
    INSERT_SETPOINT,
    CycleRecorder,
    Interval,
    interval_from_row,
    interval_row,
    read_intervals,
)
from controller.setpoints import Setpoints
from controller.writer import Intent

log = logging.getLogger(__name__)


def _load_migrations() -> tuple[str, ...]:
    text = importlib.resources.files("controller").joinpath("store_schema.sql").read_text(encoding="utf-8")
    parts = re.split(r"^-- migration (\d+)$", text, flags=re.MULTILINE)
    numbers = [int(n) for n in parts[1::2]]
    if numbers != list(range(1, len(numbers) + 1)):
        raise StoreError(f"store_schema.sql: migrations must be numbered 1, 2, ...; found {numbers}")
    return tuple(parts[2::2])


class StoreError(RuntimeError):
    """The database cannot be used (newer schema, locked by another process)."""


MIGRATIONS: tuple[str, ...] = ()  # loaded from store_schema.sql on first open (tests may substitute)


class NowSource(Protocol):
    def now(self) -> datetime: ...


class StoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    cycle_every: int = Field(default=1, ge=1, description="cycles per row of the cycles table")
    max_hold_s: float = Field(default=30.0, gt=0, description="longest a sample counts for (cf. max_age_s)")
    checkpoint_s: float | None = Field(default=60.0, gt=0, description="None: the writer checkpoints")
    pending_max: int = Field(default=3600, ge=1, description="cycles queued while the database is busy")


@dataclass(frozen=True, slots=True)
class StoredPlan:
    id: int
    created: datetime
    strategy: str
    status: str
    fallback: bool
    horizon_start: datetime
    horizon_end: datetime
    plan: Any


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    code: str
    device: str
    message: str
    raised: datetime
    cleared: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    external_id: str | None
    ts: datetime
    updated: datetime
    payload: Any
    state: str


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What a restarted controller picks up: devices were last told ``last_commanded`` (their
    watchdogs may have reverted it since), the plan in force, the alarms still active, and the
    quarter-hour the next cycle continues."""

    last_commanded: Setpoints | None
    current_plan: StoredPlan | None
    active_alarms: tuple[Alarm, ...]
    open_interval: Interval | None
    last_cycle_ts: datetime | None


def _ts(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


def _json(obj: Any) -> str:
    if isinstance(obj, str):
        json.loads(obj)  # already encoded: refuse to store something that is not JSON
        return obj
    return json.dumps(obj, separators=(",", ":"), allow_nan=False,
                      default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o))  # fmt: skip


class Store:
    """Durable controller state; also a cycle :class:`~controller.cycle.Observer`."""

    def __init__(self, conn: sqlite3.Connection, path: str, clock: NowSource, settings: StoreSettings,
                 lock_fd: int | None) -> None:  # fmt: skip
        self._db, self._path, self.clock, self.settings = conn, path, clock, settings
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._pending: deque[CycleReport] = deque(maxlen=settings.pending_max)
        self.dropped = 0  # cycles lost from a full queue (database unavailable for a long time)
        self._rec = CycleRecorder(settings.cycle_every, settings.max_hold_s)
        self._rec.load(conn)
        self._stop = threading.Event()
        self._closed = False
        self._checkpointer: threading.Thread | None = None
        if settings.checkpoint_s is not None and path != ":memory:":
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="store-checkpoint", daemon=True)
            self._checkpointer.start()

    # -- open / close ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The database file (``":memory:"`` for a throwaway one): other readers open it themselves."""
        return self._path

    @classmethod
    def open(cls, path: str | os.PathLike[str], clock: NowSource, settings: StoreSettings | None = None) -> Store:
        """Open (creating or migrating) the database at ``path``; ``":memory:"`` for a throwaway one."""
        settings = settings or StoreSettings()
        p = os.fspath(path)
        lock_fd = None
        if p != ":memory:":
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(p + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise StoreError(f"{p} is in use by another process") from None
        conn = None
        try:
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA journal_size_limit=67108864")
            # with a background checkpointer the writer only checkpoints as a safety net (~40 MB of WAL)
            conn.execute(f"PRAGMA wal_autocheckpoint={1000 if settings.checkpoint_s is None else 10000}")
            _migrate(conn)
        except BaseException:
            if conn is not None:
                conn.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(conn, p, clock, settings, lock_fd)

    def close(self) -> None:
        """Write what is queued (including a partial cycles row), checkpoint, release the file."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            try:
                self._flush(final=True)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; ``durable`` syncs the WAL at commit (synchronous=FULL for this one)."""
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may already have rolled back
                db.execute("ROLLBACK")
            raise
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    def _checkpoint_loop(self) -> None:
        assert self.settings.checkpoint_s is not None
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.settings.checkpoint_s):
                try:  # PASSIVE never blocks the writer; if it is busy now, the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed")
        finally:
            conn.close()

    # -- cycles ----------------------------------------------------------------------------------
    def on_cycle(self, report: CycleReport) -> None:
        """Record the cycle, its writes and the quarter-hour aggregates in one transaction."""
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(report)
        if not self._lock.acquire(blocking=False):
            return  # another thread is writing: this cycle goes in with the next one
        try:
            self._flush()
        finally:
            self._lock.release()

    def _flush(self, final: bool = False) -> None:
        batch = list(self._pending)
        if not batch and not (final and self._rec.group):
            return
        group = list(self._rec.group)
        try:
            with self._tx() as db:
                for r in batch:
                    self._rec.write(db, r)
                if final:
                    self._rec.write_group(db)
        except BaseException as exc:
            self._rec.group = group
            self._rec.load(self._db)  # the in-memory state must match what was committed
            if not isinstance(exc, sqlite3.OperationalError):  # not a busy/full/I/O condition: never retry
                self.dropped += len(batch)
                self._pending.clear()
            raise
        for _ in batch:
            self._pending.popleft()

    def intervals(self, since: datetime | None = None, *, closed_only: bool = False) -> list[Interval]:
        """Quarter-hours in time order, from the one containing ``since``."""
        with self._lock:
            return read_intervals(self._db, since, closed_only)

    # -- setpoints -------------------------------------------------------------------------------
    def journal_writes(self, ts: datetime, intents: Sequence[Intent]) -> list[int]:
        """Record writes about to go out (ok = -1) and return their row ids; the cycle's record resolves them.

        Committed before any is sent: a device may apply a write whose controller dies before the cycle
        is recorded, and the database must still show it.
        """
        with self._lock, self._tx() as db:
            ids = []
            for device, kind, value in intents:
                cur = db.execute(INSERT_SETPOINT, (ts.isoformat(), device, kind,
                                                    None if value is None else float(value), -1))  # fmt: skip
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
            return ids

    def last_commanded(self) -> Setpoints | None:
        """The last value each device accepted (maintained by a trigger on ``setpoints``)."""
        with self._lock:
            rows = self._db.execute("SELECT device, kind, value FROM setpoints_last").fetchall()
        if not rows:
            return None
        pv: dict[str, float | None] = {}
        bat: dict[str, float] = {}
        shed: dict[str, bool] = {}
        for dev, kind, value in rows:
            if kind == "pv_limit_kw":
                pv[dev] = value
            elif kind == "battery_p_kw":
                bat[dev] = float(value)
            elif kind == "load_shed":
                shed[dev] = bool(value)
        return Setpoints(pv_limit_kw=pv, battery_p_kw=bat, load_shed=shed, reason="restored")

    # -- plans -----------------------------------------------------------------------------------
    def save_plan(self, strategy: str, status: str, horizon_start: datetime, horizon_end: datetime, plan: Any,
                  *, fallback: bool = False, make_current: bool = True) -> int:  # fmt: skip
        """Store a plan (any JSON-able value, or a JSON string), durably; returns its id."""
        text, now = _json(plan), self.clock.now().isoformat()
        with self._lock, self._tx(durable=True) as db:
            cur = db.execute(
                "INSERT INTO plans (created_ts, strategy, status, fallback, horizon_start, horizon_end, plan_json)"
                " VALUES (?,?,?,?,?,?,?)",
                (now, strategy, status, int(fallback), horizon_start.isoformat(), horizon_end.isoformat(), text),
            )  # fmt: skip
            plan_id = int(cur.lastrowid or 0)
            if make_current:
                db.execute("INSERT OR REPLACE INTO current_plan (id, plan_id, since_ts) VALUES (1,?,?)", (plan_id, now))
        return plan_id

    def current_plan(self) -> StoredPlan | None:
        with self._lock:
            row = self._db.execute(
                "SELECT p.id, created_ts, strategy, status, fallback, horizon_start, horizon_end, plan_json"
                " FROM current_plan c JOIN plans p ON p.id = c.plan_id").fetchone()  # fmt: skip
        if row is None:
            return None
        iso = datetime.fromisoformat
        return StoredPlan(
            row[0], iso(row[1]), row[2], row[3], bool(row[4]), iso(row[5]), iso(row[6]), json.loads(row[7])
        )

    # -- alarms ----------------------------------------------------------------------------------
    def raise_alarm(self, code: str, device: str, message: str) -> int:
        """Raise an alarm (``device`` "" for the site); raising an active one returns its id unchanged."""
        with self._lock, self._tx() as db:
            db.execute("INSERT INTO alarms (code, device, message, raised_ts) VALUES (?,?,?,?)"
                       " ON CONFLICT (code, device) WHERE cleared_ts IS NULL DO NOTHING",
                       (code, device, message, self.clock.now().isoformat()))  # fmt: skip
            row = db.execute("SELECT id FROM alarms WHERE code = ? AND device = ? AND cleared_ts IS NULL",
                             (code, device)).fetchone()  # fmt: skip
        return int(row[0])

    def clear_alarm(self, code: str, device: str) -> bool:
        """Clear the active alarm; False when there was none."""
        with self._lock, self._tx() as db:
            cur = db.execute("UPDATE alarms SET cleared_ts = ? WHERE code = ? AND device = ? AND cleared_ts IS NULL",
                             (self.clock.now().isoformat(), code, device))  # fmt: skip
        return cur.rowcount > 0

    def active_alarms(self) -> list[Alarm]:
        with self._lock:
            rows = self._db.execute("SELECT id, code, device, message, raised_ts, cleared_ts FROM alarms"
                                    " WHERE cleared_ts IS NULL ORDER BY id").fetchall()  # fmt: skip
        return [Alarm(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), None) for r in rows]

    # -- events ----------------------------------------------------------------------------------
    def record_event(self, kind: str, payload: Any, *, external_id: str | None = None, state: str = "new",
                     ts: datetime | None = None) -> int:  # fmt: skip
        """Record an event durably; the same ``(kind, external_id)`` again updates payload and state."""
        now = self.clock.now().isoformat()
        with self._lock, self._tx(durable=True) as db:
            db.execute("INSERT INTO events (kind, external_id, ts, updated_ts, payload_json, state)"
                       " VALUES (?,?,?,?,?,?)"
                       " ON CONFLICT (kind, external_id) DO UPDATE SET payload_json = excluded.payload_json,"
                       " state = excluded.state, updated_ts = excluded.updated_ts",
                       (kind, external_id, (ts.isoformat() if ts else now), now, _json(payload), state))  # fmt: skip
            row = db.execute("SELECT id FROM events WHERE kind = ? AND external_id IS ? ORDER BY id DESC LIMIT 1",
                             (kind, external_id)).fetchone()  # fmt: skip
        return int(row[0])

    def set_event_state(self, event_id: int, state: str) -> None:
        with self._lock, self._tx(durable=True) as db:
            db.execute("UPDATE events SET state = ?, updated_ts = ? WHERE id = ?",
                       (state, self.clock.now().isoformat(), event_id))  # fmt: skip

    def events(
        self, kind: str | None = None, *, state: str | None = None, since: datetime | None = None
    ) -> list[Event]:
        """Events in the order recorded, optionally of one kind/state and at or after ``since``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, external_id, ts, updated_ts, payload_json, state FROM events"
                " WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY id",
                (kind, state),
            ).fetchall()
        out = [Event(r[0], r[1], r[2], datetime.fromisoformat(r[3]), datetime.fromisoformat(r[4]), json.loads(r[5]),
                     r[6]) for r in rows]  # fmt: skip
        return [e for e in out if since is None or e.ts >= since]

    # -- restart ---------------------------------------------------------------------------------
    def resume_state(self) -> ResumeState:
        with self._lock:
            row = self._db.execute("SELECT ts FROM history_cursor").fetchone()
            iv = self._rec.qh.open
            open_iv = None if iv is None else interval_from_row(interval_row(iv, None))
        return ResumeState(
            self.last_commanded(),
            self.current_plan(),
            tuple(self.active_alarms()),
            open_iv,
            _ts(row[0]) if row else None,
        )


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to the newest version, one transaction per version."""
    migrations = MIGRATIONS or _load_migrations()
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
    version = int(row[0]) if row else 0
    if version > len(migrations):
        raise StoreError(f"database schema v{version} is newer than this software (v{len(migrations)})")
    for v in range(version + 1, len(migrations) + 1):
        try:
            stamp = f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{v}');"
            conn.executescript(f"BEGIN IMMEDIATE;\n{migrations[v - 1]}\n{stamp}\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("store schema migrated to v%d", v)
