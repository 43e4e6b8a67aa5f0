"""Per-slot and event-level performance against hand-computed figures."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.event import DrEventSpec, DrInterval
from dr.performance import SlotResult, assess_slot, committed_kw, summarise
from tests.dr.evidence_support import TZ, event

T = datetime(2026, 7, 15, 14, 0, tzinfo=TZ)
Q = timedelta(minutes=15)


def test_reduction_slot() -> None:
    spec = event(T, T + 4 * Q, "reduction", 100.0)
    r = assess_slot(spec, T, 500.0, 420.0, battery_kwh=12.5, shed_kwh={"chiller": 5.0})
    assert (r.delivered_kw, r.committed_kw, r.fraction) == (80.0, 100.0, 1.0)
    assert r.delivered_kwh == pytest.approx(20.0) and r.committed_kwh == pytest.approx(25.0)
    assert r.response_rate == pytest.approx(0.8)
    assert r.complete and r.shed_kwh == {"chiller": 5.0}


def test_import_cap_commits_only_what_the_baseline_exceeds() -> None:
    spec = event(T, T + 4 * Q, "import_cap", 300.0)
    assert assess_slot(spec, T, 500.0, 310.0).committed_kw == 200.0
    r = assess_slot(spec, T, 250.0, 240.0)  # cap above the baseline: nothing asked
    assert r.committed_kw == 0.0 and r.response_rate is None and r.delivered_kw == 10.0


def test_an_event_that_asked_nothing_is_met_while_the_park_stays_under_its_baseline() -> None:
    spec = event(T, T + 2 * Q, "import_cap", 300.0)  # the cap sits above the baseline throughout
    under = [assess_slot(spec, T, 250.0, 240.0), assess_slot(spec, T + Q, 260.0, 255.0)]
    assert summarise(under, 0.8, 2.0).response_rate is None and summarise(under, 0.8, 2.0).met
    over = [assess_slot(spec, T, 250.0, 240.0), assess_slot(spec, T + Q, 260.0, 290.0)]
    assert not summarise(over, 0.8, 2.0).met  # it drew more than its baseline
    assert not summarise([], 0.8, 2.0).met


def test_a_slot_half_in_the_event_counts_half() -> None:
    spec = event(T + timedelta(minutes=7, seconds=30), T + 4 * Q, "reduction", 100.0)
    assert committed_kw(spec, T, 500.0) == (100.0, 0.5)
    r = assess_slot(spec, T, 500.0, 400.0)
    assert r.delivered_kwh == pytest.approx(12.5) and r.committed_kwh == pytest.approx(12.5)


def test_mixed_intervals_in_one_slot_are_time_weighted() -> None:
    ivs = (DrInterval(T, T + timedelta(minutes=5), "reduction", 60.0),
           DrInterval(T + timedelta(minutes=5), T + Q, "import_cap", 300.0))  # fmt: skip
    spec = DrEventSpec("e", "p", 0, 0, "REAL_TIME", T, ivs)
    kw, frac = committed_kw(spec, T, 500.0)
    assert frac == 1.0 and kw == pytest.approx((60 * 5 + 200 * 10) / 15)


def test_no_meter_reading_delivers_nothing_and_is_incomplete() -> None:
    r = assess_slot(event(T, T + Q), T, 500.0, None)
    assert r.delivered_kw is None and r.delivered_kwh == 0.0 and not r.complete and r.response_rate is None


def test_event_outcome_totals_threshold_and_settlement() -> None:
    spec = event(T, T + 4 * Q, "reduction", 100.0)
    results = [assess_slot(spec, T + i * Q, 500.0, a, battery_kwh=10.0, shed_kwh={"c": 2.0})
               for i, a in enumerate([400.0, 410.0, 420.0, 430.0])]  # fmt: skip
    out = summarise(results, threshold=0.8, price_cny_per_kwh=3.0)
    # delivered 100+90+80+70 = 340 kW * 0.25 h = 85 kWh of 100 committed
    assert out.delivered_kwh == pytest.approx(85.0) and out.committed_kwh == pytest.approx(100.0)
    assert out.response_rate == pytest.approx(0.85) and out.met
    assert out.settlement_cny == pytest.approx(255.0)
    assert out.battery_kwh == 40.0 and out.shed_kwh == {"c": 8.0} and out.complete_slots == 4
    assert not summarise(results, threshold=0.9, price_cny_per_kwh=3.0).met


def test_settlement_is_never_negative() -> None:
    spec = event(T, T + Q)
    out = summarise([assess_slot(spec, T, 500.0, 600.0)], threshold=0.8, price_cny_per_kwh=3.0)
    assert out.delivered_kwh == pytest.approx(-25.0) and out.settlement_cny == 0.0 and not out.met


@given(st.lists(st.tuples(st.floats(0, 2000), st.floats(-500, 2000), st.floats(0, 500)), min_size=1, max_size=8),
       st.floats(0, 10))  # fmt: skip
def test_event_rate_is_the_ratio_of_sums(rows: list[tuple[float, float, float]], price: float) -> None:
    spec = event(T, T + len(rows) * Q, "reduction", 1.0)
    results = [SlotResult(T + i * Q, b, a, c) for i, (b, a, c) in enumerate(rows)]
    out = summarise(results, 0.8, price)
    committed = sum(c for _, _, c in rows) * 0.25
    assert out.committed_kwh == pytest.approx(committed)
    assert out.settlement_cny >= 0
    if committed > 0:
        assert out.response_rate == pytest.approx(out.delivered_kwh / committed)
        assert out.met == (out.delivered_kwh / out.committed_kwh >= 0.8)
    else:
        assert out.response_rate is None and out.met == (out.delivered_kwh >= 0)
    assert spec.start == T
