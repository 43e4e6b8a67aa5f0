"""The ledger over a real Store file: slot rows at quarter-hour close, restarts without holes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.history import Interval
from controller.store import Store
from dr.event import DrEventSpec, DrInterval
from dr.evidence import Evidence, EvidenceError
from dr.ledger import ActiveEvent, DrLedger, Running, truncated
from dr.performance import EventOutcome, SlotResult
from tests.dr.evidence_support import END, QUIET, START, STEP, Clock, event, flat_baseline, report, run


class Seen:
    def __init__(self) -> None:
        self.slots: list[SlotResult] = []
        self.outcomes: list[EventOutcome] = []
        self.running: list[tuple[datetime, list[Running], float | None]] = []

    def on_active(self, now: datetime, running: Sequence[Running], grid_kw: float | None) -> None:
        self.running.append((now, list(running), grid_kw))

    def on_slot(self, spec: DrEventSpec, result: SlotResult) -> None:
        self.slots.append(result)

    def on_outcome(self, spec: DrEventSpec, outcome: EventOutcome) -> None:
        self.outcomes.append(outcome)


def rows(db: Path) -> list[SlotResult]:
    with Evidence.open_readonly(db) as ev:
        return ev.slots("ev1")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "park.db"


@pytest.fixture
def active() -> list[ActiveEvent]:
    return [ActiveEvent(event(START, END, "reduction", 100.0), flat_baseline(), 0.8, 3.0)]


def test_each_quarter_hour_is_written_when_it_closes(db: Path, active: list[ActiveEvent]) -> None:
    seen = Seen()
    run(db, START - timedelta(minutes=5), START + timedelta(minutes=16), active, seen=seen)
    assert [r.slot_start for r in rows(db)] == [START]  # 10:15 is still open
    run(db, START + timedelta(minutes=16), END + timedelta(minutes=5), active, seen=seen)
    got = rows(db)
    assert [r.slot_start for r in got] == [START + timedelta(minutes=15 * i) for i in range(4)]
    for r in got:
        assert (r.baseline_kw, r.committed_kw) == (500.0, 100.0)
        assert r.actual_kw == pytest.approx(400.0) and r.delivered_kwh == pytest.approx(25.0)
        assert r.battery_kwh == pytest.approx(12.5)
    assert got[0].shed_kwh == pytest.approx({"chiller": 20.0}) and got[0].complete
    # the run was cut at 10:16 (a restart): 10:15 lost its first minute of shed observation
    assert got[1].shed_kwh["chiller"] == pytest.approx(80 * 14 / 60) and not got[1].complete
    assert got[2].complete and got[3].complete and got[3].shed_kwh == pytest.approx({"chiller": 20.0})
    assert len(seen.outcomes) == 1 and len(seen.slots) == 4
    at_ten = next(x for x in seen.running if x[0] == START)
    assert [(x.baseline_kw, x.committed_kw) for x in at_ten[1]] == [(500.0, 100.0)] and at_ten[2] == 400.0
    assert next(x for x in seen.running if x[0] == START - STEP)[1] == []
    out = seen.outcomes[0]
    assert out.delivered_kwh == pytest.approx(100.0) and out.met and out.settlement_cny == pytest.approx(300.0)


def test_a_restart_mid_event_recomputes_the_closed_slots_from_history(db: Path, active: list[ActiveEvent]) -> None:
    # the ledger sees 9:55-10:05 only; the Store keeps recording until 10:40, then the controller restarts
    run(
        db,
        START - timedelta(minutes=5),
        START + timedelta(minutes=40),
        active,
        ledger_until=START + timedelta(minutes=5),
    )
    assert rows(db) == []
    run(db, START + timedelta(minutes=40), END + timedelta(minutes=5), [])  # the manager has not re-offered it
    got = rows(db)
    assert [r.slot_start for r in got] == [START + timedelta(minutes=15 * i) for i in range(4)]  # no hole
    assert all(r.actual_kw == pytest.approx(400.0) and r.battery_kwh == pytest.approx(12.5) for r in got)
    assert [r.complete for r in got] == [False, False, False, True]
    assert got[0].shed_kwh == {} and got[3].shed_kwh == pytest.approx({"chiller": 20.0})


def test_a_row_is_final_and_a_finished_event_is_not_reloaded(db: Path, active: list[ActiveEvent]) -> None:
    run(db, START - timedelta(minutes=1), END + timedelta(minutes=1), active)
    first = rows(db)
    run(db, END + timedelta(minutes=1), END + timedelta(minutes=20), active)
    assert rows(db) == first
    with Store.open(db, Clock(END), QUIET) as store, Evidence.open(db) as ev:
        ledger = DrLedger(store, ev, lambda now: [])
        ledger.on_cycle(report(END + timedelta(hours=1)))
        assert ledger.tracked == []


def test_a_cancellation_stops_the_assessment(db: Path) -> None:
    spec = event(START, END, "reduction", 100.0)
    cancelled = event(START, END, "reduction", 100.0, cancelled=True)
    run(db, START - timedelta(minutes=1), START + timedelta(minutes=20), [ActiveEvent(spec, flat_baseline(), 0.8, 3)])
    run(
        db, START + timedelta(minutes=20), END + timedelta(minutes=5), [ActiveEvent(cancelled, flat_baseline(), 0.8, 3)]
    )
    got = rows(db)
    assert [r.slot_start for r in got] == [START, START + timedelta(minutes=15)]
    assert got[1].fraction == pytest.approx(1 / 3) and got[1].delivered_kwh == pytest.approx(100 * 0.25 / 3)
    with Evidence.open_readonly(db) as ev:
        sb = ev.baseline("ev1")
    assert sb is not None and sb.stopped_ts == START + timedelta(minutes=20)
    assert truncated(sb.spec, sb.stopped_ts).end == sb.stopped_ts


def test_evidence_refuses_a_database_the_store_never_migrated(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "x.db").close()
    with pytest.raises(EvidenceError, match="open it with the controller's Store first"):
        Evidence.open(tmp_path / "x.db")
    with pytest.raises(EvidenceError, match="no such database"):
        Evidence.open_readonly(tmp_path / "missing.db")


def test_a_version_1_database_gains_the_evidence_tables(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    import controller.store as store_mod

    base = store_mod._load_migrations()
    monkeypatch.setattr(store_mod, "MIGRATIONS", base[:1])
    with Store.open(db, Clock(START), QUIET) as s:
        s.on_cycle(report(START))
    with pytest.raises(EvidenceError):
        Evidence.open(db)
    monkeypatch.setattr(store_mod, "MIGRATIONS", base)
    Store.open(db, Clock(START), QUIET).close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(len(base)),)
    assert conn.execute("SELECT count(*) FROM cycles").fetchone() == (1,)
    conn.close()
    Evidence.open(db).close()


def test_a_modification_changes_the_intervals_judged_not_the_baseline(db: Path) -> None:
    m = timedelta(minutes=1)
    first = event(START, END, "reduction", 100.0)
    more = DrEventSpec(
        "ev1", "jiangsu", 1, 0, "DAY_AHEAD", first.created, (DrInterval(START, END, "reduction", 200.0),)
    )
    run(db, START - m, START + 20 * m, [ActiveEvent(first, flat_baseline(), 0.8, 3)])
    run(db, START + 20 * m, END + m, [ActiveEvent(more, flat_baseline(400.0), 0.8, 3)])
    got = rows(db)
    # 10:00 was written before the modification; later slots by the spec in force when they close
    assert [r.committed_kw for r in got] == [100.0, 200.0, 200.0, 200.0]
    assert {r.baseline_kw for r in got} == {500.0}
    with Evidence.open_readonly(db) as ev:
        sb = ev.baseline("ev1")
    assert sb is not None and sb.spec.modification_number == 1


def test_an_event_cancelled_before_the_ledger_saw_it_run_is_ignored(db: Path) -> None:
    m = timedelta(minutes=1)
    run(db, START - m, END + m, [ActiveEvent(event(START, END, cancelled=True), flat_baseline(), 0.8, 3)])
    assert rows(db) == []
    with Evidence.open_readonly(db) as ev:
        assert ev.event_ids() == []


def test_slots_the_history_never_gets_are_recorded_unmetered_after_a_day(db: Path) -> None:
    class NoHistory:
        def intervals(self, since: datetime | None = None, *, closed_only: bool = False) -> list[Interval]:
            return []

    Store.open(db, Clock(START), QUIET).close()
    ev = ActiveEvent(event(START, END), flat_baseline(), 0.8, 3.0)
    with Evidence.open(db) as evidence:
        ledger = DrLedger(NoHistory(), evidence, lambda now: [ev])
        ledger.on_cycle(report(START))
        ledger.on_cycle(report(END + timedelta(hours=23)))
        assert ledger.tracked == ["ev1"] and evidence.slots("ev1") == []
        ledger.on_cycle(report(END + timedelta(hours=25)))
        got = evidence.slots("ev1")
    assert len(got) == 4 and all(r.actual_kw is None and not r.complete for r in got)
    assert ledger.tracked == []
