"""Provisional baselines: what the planner works from before a baseline's inputs are all in."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from dr.baseline import BaselineError, compute_baseline, provisional_baseline
from tests.dr.evidence_support import TZ, closed, history

START = datetime(2026, 7, 15, 19, 0, tzinfo=TZ)
END = datetime(2026, 7, 15, 20, 0, tzinfo=TZ)


def by_day(t: datetime) -> float:
    return 100.0 + t.day


def test_ten_in_ten_before_its_adjustment_window_is_the_unadjusted_mean() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)  # nothing of the event day yet
    with pytest.raises(BaselineError, match="day-of adjustment"):
        compute_baseline("ten_in_ten", h, START, END, tz=TZ)
    b = provisional_baseline("ten_in_ten", h, START, END, tz=TZ)
    # the ten weekdays before Wed 15 July: 1-3, 6-10, 13, 14 July
    assert b.kw == pytest.approx([100 + (1 + 2 + 3 + 6 + 7 + 8 + 9 + 10 + 13 + 14) / 10] * 4)
    assert b.adjustment == 1.0 and len(b.days_used) == 10


def test_ten_in_ten_once_the_window_closed_is_the_judged_baseline() -> None:
    h = history(date(2026, 6, 1), date(2026, 7, 14), by_day)
    h += [closed(datetime(2026, 7, 15, hh, mm, tzinfo=TZ), 200.0) for hh in range(15, 18) for mm in (0, 15, 30, 45)]
    final = compute_baseline("ten_in_ten", h, START, END, tz=TZ)
    assert final.adjustment == pytest.approx(1.2)  # 200 / 107.3, capped
    assert provisional_baseline("ten_in_ten", h, START, END, tz=TZ).adjustment == 1.0  # never adjusted


def test_pre_event_estimate_is_the_last_closed_quarter_hour_before_the_event() -> None:
    h = [closed(datetime(2026, 7, 15, hh, mm, tzinfo=TZ), kw) for hh, mm, kw in ((18, 0, 900.0), (18, 15, 950.0),
                                                                                (19, 0, 10.0))]
    b = provisional_baseline("pre_event_15min", h, START, END, tz=TZ)
    assert b.kw == (950.0,) * 4 and b.inputs == ((datetime(2026, 7, 15, 18, 15, tzinfo=TZ), 950.0),)
    with pytest.raises(BaselineError):
        compute_baseline("pre_event_15min", h, START, END, tz=TZ)  # 18:45 is not closed yet
    with pytest.raises(BaselineError, match="no closed quarter-hour"):
        provisional_baseline("pre_event_15min", h[2:], START, END, tz=TZ)
