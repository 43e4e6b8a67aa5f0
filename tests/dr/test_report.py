"""Reports from a real database: the manager's event rows plus the ledger's evidence; JSON and CSV files."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from dr.assess import BaselineBook, event_days, manager_events
from dr.config import ProgrammeConfig
from dr.event import DrAck
from dr.ledger import ActiveEvent
from dr.persist import DrRecord
from dr.report import event_report, write_reports
from tests.dr.evidence_support import END, START, TZ, event, flat_baseline, history, run, sample_db

M = timedelta(minutes=1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return sample_db(tmp_path / "park.db")


def test_event_report_has_spec_ack_baseline_intervals_totals_and_outcome(db: Path) -> None:
    rep = event_report(db, "ev1")
    assert rep is not None
    assert rep["state"] == "completed" and rep["ack"]["opt_in"] is True and rep["spec"]["event_id"] == "ev1"
    assert rep["baseline"]["method"] == "five_day" and len(rep["baseline"]["slots"]) == 4
    assert [iv["slot_start"] for iv in rep["intervals"]] == [(START + 15 * M * i).isoformat() for i in range(4)]
    t = rep["totals"]
    # 4 quarter-hours of (500 - 400) kW = 100 kWh delivered of 4 x 100 kW x 0.25 h committed, paid at 3 CNY/kWh
    assert t["delivered_kwh"] == pytest.approx(100.0) and t["committed_kwh"] == pytest.approx(100.0)
    assert t["settlement_cny"] == pytest.approx(300.0) and t["battery_kwh"] == pytest.approx(50.0)
    assert t["shed_kwh"] == pytest.approx({"chiller": 80.0}) and t["expected_slots"] == 4
    assert t["hours"] == 1.0 and t["mean_delivered_kw"] == pytest.approx(100.0)  # Jiangsu's figure
    assert rep["outcome"] == "met"
    json.dumps(rep, allow_nan=False)


def test_outcomes_rejected_unknown_pending_missed(tmp_path: Path, db: Path) -> None:
    rep = event_report(db, "ev2/bad")
    assert rep is not None and rep["outcome"] == "rejected" and rep["baseline"] is None and rep["totals"] is None
    assert event_report(db, "nope") is None
    other = tmp_path / "other.db"
    run(other, START - M, START + 20 * M, [ActiveEvent(event(START, END, value_kw=150.0), flat_baseline(), 0.8, 3)])
    rep = event_report(other, "ev1")
    assert rep is not None and rep["outcome"] == "pending" and rep["state"] is None
    run(other, START + 20 * M, END + M, [])
    rep = event_report(other, "ev1")
    assert rep is not None and rep["outcome"] == "missed"  # 100 of 150 kWh: 0.67 < 0.8
    assert rep["totals"]["response_rate"] == pytest.approx(100 / 150)


def test_write_reports_json_and_csv_agree(tmp_path: Path, db: Path) -> None:
    out = tmp_path / "out"
    paths = write_reports(db, out)
    assert sorted(p.name for p in paths) == ["dr_events.json", "ev1.csv", "ev1.json", "ev2_bad.csv", "ev2_bad.json"]
    every = json.loads((out / "dr_events.json").read_text())
    assert [e["event_id"] for e in every] == ["ev1", "ev2/bad"]
    assert json.loads((out / "ev1.json").read_text()) == event_report(db, "ev1")
    with (out / "ev1.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and "shed_kwh_chiller" in rows[0]
    assert sum(float(r["delivered_kwh"]) for r in rows) == pytest.approx(every[0]["totals"]["delivered_kwh"])
    assert all(r["complete"] == "1" for r in rows)


def test_baseline_book_and_manager_events(tmp_path: Path) -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), lambda t: 100.0 + t.day)

    class Hist:
        def intervals(self, since: object = None, *, closed_only: bool = False) -> list:  # type: ignore[type-arg]
            return h

    progs = {"jiangsu": ProgrammeConfig(price_cny_per_kwh=3.0, penalty_cny_per_kwh=1.0)}
    other = event(START - timedelta(days=1), END - timedelta(days=1), eid="ev0")  # 14 July had an event
    book = BaselineBook(Hist(), progs, TZ, other_events=lambda: [other])
    spec = event(START, END)
    assert date(2026, 7, 14) not in book.get(spec).days_used
    assert book.kw(spec) == pytest.approx([(107 + 108 + 109 + 110 + 113) / 5] * 4)  # 13, 10, 9, 8, 7 July
    assert event_days(event(START, START + timedelta(days=1)), TZ) == {date(2026, 7, 15), date(2026, 7, 16)}

    ack = DrAck("ev1", 0, "accepted", True, "ok", 150.0, START)

    class Mgr:
        def __init__(self) -> None:
            self.records = {"ev1": DrRecord(spec, ack, "active")}

    source = manager_events(Mgr(), book, progs)
    assert source(START - M) == []
    (got,) = source(START)
    assert got.baseline == book.get(spec) and got.threshold == 0.8 and got.price_cny_per_kwh == 3.0
    mgr = Mgr()
    mgr.records["ev1"] = DrRecord(replace(spec, cancelled=True), ack, "cancelled", START + 20 * M)
    (got,) = manager_events(mgr, book, progs)(START + 21 * M)
    assert got.spec.cancelled and got.stopped == START + 20 * M
    mgr.records["ev1"] = DrRecord(spec, replace(ack, opt_in=False), "accepted")  # opted out: nothing to assess
    assert manager_events(mgr, book, progs)(START + 21 * M) == []


def test_parkctl_dr_report_command(tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parkctl.cli import main

    assert main(["dr", "report", "--db", str(db), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "dr_events.json").exists() and "ev1.csv" in capsys.readouterr().out
    assert main(["dr", "report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "r")]) == 2
    assert "none.db: no such database" in capsys.readouterr().err
