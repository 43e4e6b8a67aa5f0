"""A demand-response afternoon end to end: prior days in the database, the grid company's calls over a
real broker, the mpc controller committing and holding them, and evidence that reproduces by hand."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from sim.day import SimOptions, simulate_day
from sim.dr_calls import GridCall
from sim.scenario import Scenario, load_scenario
from tests.sim.test_day import broker_url


def afternoon() -> Scenario:
    """dr-event-day from 17:00 for two hours: a real-time call, a day-ahead one, and one cancelled."""
    sc = load_scenario("dr-event-day")
    start = sc.local_start + timedelta(hours=17)
    dr = sc.demand_response
    assert dr is not None
    at = start.isoformat()

    def t(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    rt = next(c for c in dr.calls if c.notice == "REAL_TIME")  # 17:30, for 17:45-18:15, 1 MW
    calls = [
        rt,
        GridCall(id="evt-da", programme="hunan-peak", notice="DAY_AHEAD", sent_at=t(5), start=t(75),
                 type="REDUCTION", values_kw=[1200, 1200]),  # 18:15-18:45
        GridCall(id="evt-off", programme="hunan-peak", notice="DAY_AHEAD", sent_at=t(5), cancel_at=t(20),
                 start=t(105), type="REDUCTION", values_kw=[800]),
    ]
    assert at < rt.sent_at.isoformat()
    new_dr = dr.model_copy(update={"history_days": 7, "calls": calls})
    return sc.model_copy(update={"start": start, "demand_response": new_dr})


@pytest.mark.slow
async def test_calls_are_met_without_a_violation_and_the_baselines_reproduce(
    tmp_path: Path, mosquitto_broker: object
) -> None:
    options = SimOptions(hours=2.0, cycle_s=15, strategy="mpc", mqtt_url=broker_url(mosquitto_broker), out_dir=tmp_path)
    result = await simulate_day(afternoon(), options)
    k = result.kpis
    assert k["export_limit_violation_s"] == 0 and k["import_limit_violation_s"] == 0

    reports = {r["event_id"]: r for r in json.loads((tmp_path / "dr_events.json").read_text())}
    calls = json.loads((tmp_path / "dr_calls.json").read_text())
    assert [(c["call_id"], c["action"], c["ack"]["status"]) for c in calls] == [
        ("evt-da", "event", "accepted"), ("evt-off", "event", "accepted"), ("evt-off", "cancel", "cancelled"),
        ("evt-0715-rt", "event", "accepted"),
    ]  # fmt: skip
    assert reports["evt-off"]["outcome"] == "cancelled" and not reports["evt-off"]["intervals"]
    for eid in ("evt-da", "evt-0715-rt"):
        rep = reports[eid]
        assert rep["ack"]["opt_in"] is True
        assert rep["outcome"] == "met", rep["totals"]
        assert rep["totals"]["response_rate"] >= 0.95
        assert rep["totals"]["complete_slots"] == rep["totals"]["expected_slots"] == 2

    # every baseline input is a closed quarter-hour of the controller's own history, and the
    # baseline is their plain mean (five_day) or the quarter-hour before the event (real time)
    with sqlite3.connect(tmp_path / "controller.db") as db:
        rows = {ts: kw for ts, kw in db.execute(
            "SELECT ts_start, (import_kwh - export_kwh) / (covered_s / 3600.0) FROM history_15min WHERE closed = 1")}
    five = reports["evt-da"]["baseline"]
    assert five["method"] == "five_day" and len(five["days_used"]) == 5
    for inp in five["inputs"]:
        assert inp["mean_grid_kw"] == pytest.approx(rows[inp["slot_start"]], rel=1e-9)
    for slot in five["slots"]:
        hhmm = slot["slot_start"][11:16]
        same_time = [i["mean_grid_kw"] for i in five["inputs"] if i["slot_start"][11:16] == hhmm]
        assert len(same_time) == 5 and slot["baseline_kw"] == pytest.approx(sum(same_time) / 5)
    rt = reports["evt-0715-rt"]["baseline"]
    assert rt["method"] == "pre_event_15min"
    assert [i["slot_start"] for i in rt["inputs"]] == ["2026-07-15T17:30:00+08:00"]
    assert all(s["baseline_kw"] == pytest.approx(rows["2026-07-15T17:30:00+08:00"]) for s in rt["slots"])
    # and what was delivered is the baseline less what the meter measured in each quarter-hour
    for iv in reports["evt-da"]["intervals"]:
        assert iv["actual_kw"] == pytest.approx(rows[iv["slot_start"]], rel=1e-9)
        assert iv["delivered_kw"] == pytest.approx(iv["baseline_kw"] - iv["actual_kw"])
