"""Baselines against hand-computed figures, their refusals, and invariants."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.baseline import Baseline, BaselineError, compute_baseline
from tests.dr.evidence_support import TZ, closed, history

EV_DAY = date(2026, 7, 15)  # a Wednesday
START = datetime(2026, 7, 15, 14, 0, tzinfo=TZ)
END = datetime(2026, 7, 15, 15, 0, tzinfo=TZ)


def by_day(t: datetime) -> float:
    return 100.0 + t.day  # every quarter-hour of day d draws 100 + d kW


def test_five_day_takes_the_five_latest_working_days_skipping_holidays_and_event_days() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)
    b = compute_baseline("five_day", h, START, END, tz=TZ, holidays=frozenset({date(2026, 7, 9)}),
                         excluded_days=frozenset({date(2026, 7, 13)}))  # fmt: skip
    # working days before Wed 15 July: 14 (Tue), [13 excluded], 10 (Fri), [9 holiday], 8, 7, 6
    assert b.days_used == (date(2026, 7, 6), date(2026, 7, 7), date(2026, 7, 8), date(2026, 7, 10), date(2026, 7, 14))
    assert b.kw == pytest.approx([(106 + 107 + 108 + 110 + 114) / 5] * 4)  # 109
    assert b.slots == tuple(START + timedelta(minutes=15 * i) for i in range(4))
    assert b.adjustment == 1.0
    assert len(b.inputs) == 5 * 4 and (datetime(2026, 7, 14, 14, 45, tzinfo=TZ), 114.0) in b.inputs


def test_a_day_with_one_missing_quarter_hour_is_skipped_whole() -> None:
    h = [iv for iv in history(date(2026, 6, 1), date(2026, 7, 14), by_day)
         if iv.start_us != closed(datetime(2026, 7, 14, 14, 30, tzinfo=TZ), 0).start_us]  # fmt: skip
    b = compute_baseline("five_day", h, START, END, tz=TZ)
    assert date(2026, 7, 14) not in b.days_used
    assert b.kw[0] == pytest.approx((109 + 110 + 113 + 108 + 107) / 5)  # 13, 10, 9, 8, 7 July


def test_a_poorly_metered_quarter_hour_makes_the_day_unusable() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)
    i = next(k for k, iv in enumerate(h) if iv.start_us == closed(datetime(2026, 7, 14, 14, 0, tzinfo=TZ), 0).start_us)
    h[i] = closed(datetime(2026, 7, 14, 14, 0, tzinfo=TZ), 114, covered=0.5)
    assert date(2026, 7, 14) not in compute_baseline("five_day", h, START, END, tz=TZ).days_used


def test_invitation_day_bounds_the_five_days() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)
    b = compute_baseline("five_day", h, START, END, tz=TZ, invited=date(2026, 7, 13))
    assert b.days_used[-1] == date(2026, 7, 10)


def test_too_little_history_says_how_many_days_were_needed_and_found() -> None:
    h = history(date(2026, 7, 10), date(2026, 7, 14), by_day)  # Fri, Sat, Sun, Mon, Tue: 3 working days
    with pytest.raises(BaselineError, match=r"needs 5 usable working days .* found 3 \(2026-07-10"):
        compute_baseline("five_day", h, START, END, tz=TZ)


@pytest.mark.parametrize(("window_kw", "factor"), [(110.0, 1.1), (150.0, 1.2), (50.0, 0.8)])
def test_ten_in_ten_day_of_adjustment_is_capped(window_kw: float, factor: float) -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), lambda t: 100.0)
    # the event day up to the event: 10:00-13:00 (4 h to 1 h before) at window_kw, the rest at 100
    h += history(EV_DAY, EV_DAY, lambda t: window_kw if 10 <= t.hour < 13 else 100.0)[: 14 * 4]
    b = compute_baseline("ten_in_ten", h, START, END, tz=TZ)
    assert len(b.days_used) == 10 and b.days_used[-1] == date(2026, 7, 14) and b.days_used[0] == date(2026, 7, 1)
    assert b.adjustment == pytest.approx(factor)
    assert b.kw == pytest.approx([100.0 * factor] * 4)
    assert len(b.inputs) == 10 * (4 + 12) + 12


def test_ten_in_ten_without_the_day_of_window_is_refused() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), lambda t: 100.0)
    with pytest.raises(BaselineError, match="4 h to 1 h before the event; missing 2026-07-15T10:00"):
        compute_baseline("ten_in_ten", h, START, END, tz=TZ)


def test_pre_event_uses_the_quarter_hour_before_control_starts() -> None:
    h = history(EV_DAY, EV_DAY, lambda t: 123.0 if (t.hour, t.minute) == (13, 45) else 80.0)
    b = compute_baseline("pre_event_15min", h, START + timedelta(minutes=3), END, tz=TZ)
    assert b.slots[0] == START and b.kw == (123.0,) * 4
    assert b.inputs == ((datetime(2026, 7, 15, 13, 45, tzinfo=TZ), 123.0),)
    with pytest.raises(BaselineError, match="13:45"):
        compute_baseline("pre_event_15min", h[:55], START, END, tz=TZ)


def test_unknown_method_and_bad_window_are_named() -> None:
    with pytest.raises(BaselineError, match="'x' is not one of"):
        compute_baseline("x", [], START, END, tz=TZ)  # type: ignore[arg-type]
    with pytest.raises(BaselineError, match="not after start"):
        compute_baseline("five_day", [], END, START, tz=TZ)


def test_json_round_trip() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)
    b = compute_baseline("five_day", h, START, END, tz=TZ)
    assert Baseline.from_json(b.to_json()) == b
    assert b.kw_at(START + timedelta(minutes=20)) == b.kw[1] and b.kw_at(END) is None


@settings(max_examples=25, deadline=None)
@given(c=st.floats(-500, 2000, allow_nan=False), method=st.sampled_from(["five_day", "ten_in_ten"]))
def test_constant_history_gives_the_constant(c: float, method: str) -> None:
    h = history(date(2026, 6, 20), date(2026, 7, 15), lambda t: c)
    b = compute_baseline(method, h, START, END, tz=TZ)  # type: ignore[arg-type]
    assert b.kw == pytest.approx([c] * 4, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(base=st.floats(1, 1000), window=st.floats(-1000, 5000))
def test_adjustment_always_within_caps(base: float, window: float) -> None:
    h = history(date(2026, 6, 20), date(2026, 7, 14), lambda t: base)
    h += history(EV_DAY, EV_DAY, lambda t: window)[: 14 * 4]
    b = compute_baseline("ten_in_ten", h, START, END, tz=TZ)
    assert 0.8 <= b.adjustment <= 1.2
    assert b.kw == pytest.approx([base * b.adjustment] * 4)
