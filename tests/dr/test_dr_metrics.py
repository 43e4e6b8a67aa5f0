"""DR metrics on a fresh registry: the event in force, live figures, outcomes; fed by the ledger."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dr.ledger import ActiveEvent, Running
from dr.metrics import DrMetrics
from dr.performance import assess_slot, summarise
from tests.dr.evidence_support import END, START, event, flat_baseline, run

M = timedelta(minutes=1)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, {"site": "zixing", **labels})


def test_live_figures_and_the_info_series() -> None:
    reg = CollectorRegistry()
    m = DrMetrics(reg, "zixing")
    assert math.isnan(value(reg, "parkctl_dr_committed_kw") or 0.0)
    assert value(reg, "parkctl_dr_events_total", outcome="met") == 0.0
    spec = event(START, END, "import_cap", 300.0)
    m.on_active(START, [Running(spec, 500.0, 200.0)], 350.0)
    assert value(reg, "parkctl_dr_event_active", event_id="ev1", programme_id="jiangsu", kind="import_cap") == 1.0
    assert value(reg, "parkctl_dr_baseline_kw") == 500.0 and value(reg, "parkctl_dr_committed_kw") == 200.0
    assert value(reg, "parkctl_dr_delivered_kw") == 150.0 and value(reg, "parkctl_dr_response_ratio") == 0.75
    m.on_active(END, [], 350.0)
    assert value(reg, "parkctl_dr_event_active", event_id="ev1", programme_id="jiangsu", kind="import_cap") is None
    assert math.isnan(value(reg, "parkctl_dr_delivered_kw") or 0.0)


def test_outcomes_are_counted() -> None:
    reg = CollectorRegistry()
    m = DrMetrics(reg, "zixing")
    spec = event(START, START + 15 * M)
    slot = assess_slot(spec, START, 500.0, 450.0)
    m.on_slot(spec, slot)
    assert value(reg, "parkctl_dr_last_slot_response_ratio") == pytest.approx(0.5)
    m.on_outcome(spec, summarise([slot], 0.8, 3.0))
    m.on_outcome(event(START, END, cancelled=True), summarise([], 0.8, 3.0))
    m.count("rejected")
    assert value(reg, "parkctl_dr_events_total", outcome="missed") == 1.0
    assert value(reg, "parkctl_dr_events_total", outcome="cancelled") == 1.0
    assert value(reg, "parkctl_dr_events_total", outcome="rejected") == 1.0
    with pytest.raises(ValueError, match="'won' is not one of"):
        m.count("won")
    assert b"parkctl_dr_events_total" in generate_latest(reg)


def test_fed_by_the_ledger(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    m = DrMetrics(reg, "zixing")
    run(tmp_path / "park.db", START - M, END + 5 * M, [ActiveEvent(event(START, END), flat_baseline(), 0.8, 3.0)],
        seen=m)  # fmt: skip
    assert value(reg, "parkctl_dr_events_total", outcome="met") == 1.0
    assert value(reg, "parkctl_dr_last_slot_response_ratio") == pytest.approx(1.0)
    assert math.isnan(value(reg, "parkctl_dr_committed_kw") or 0.0)  # over


def test_an_event_cancelled_while_running_counts_as_cancelled(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    m = DrMetrics(reg, "zixing")
    db = tmp_path / "park.db"
    run(db, START - M, START + 20 * M, [ActiveEvent(event(START, END), flat_baseline(), 0.8, 3.0)], seen=m)
    run(db, START + 20 * M, END, [ActiveEvent(event(START, END, cancelled=True), flat_baseline(), 0.8, 3.0)], seen=m)
    assert value(reg, "parkctl_dr_events_total", outcome="cancelled") == 1.0
    assert value(reg, "parkctl_dr_events_total", outcome="met") == 0.0
