"""Base load: shift levels, ramps at shift changes, weekends in site-local time, noise, always positive."""

from __future__ import annotations

import numpy as np
import pytest

from sim.base_load import base_load_kw, daily_levels
from sim.scenario import BaseLoad, load_scenario
from tests.sim.test_weather import variant

SUMMER = load_scenario("chenzhou-summer-weekday")  # starts on a Wednesday at local midnight
QUIET = {"base_load__noise_pct": 0.0, "base_load__ramp_min": 0.0}


def at(scenario: object, *hhmm: str, day: int = 0) -> np.ndarray:
    secs = [day * 86400 + int(h[:2]) * 3600 + int(h[3:]) * 60 for h in hhmm]
    return base_load_kw(scenario, np.asarray(secs, dtype=float))  # type: ignore[arg-type]


def test_levels_follow_the_shifts() -> None:
    sc = variant(**QUIET)
    peak = sc.base_load.peak_kw
    kw = at(sc, "03:00", "09:00", "12:30", "15:00", "19:00", "23:00")
    assert kw == pytest.approx(peak * np.array([0.4, 1.0, 0.8, 0.95, 0.7, 0.4]))


def test_shift_changes_ramp_linearly_over_ramp_min() -> None:
    sc = variant(base_load__noise_pct=0.0, base_load__ramp_min=20.0)
    peak = sc.base_load.peak_kw
    kw = at(sc, "07:45", "07:50", "07:55", "08:00", "08:05", "08:10", "08:15")
    night, day = 0.4 * peak, 1.0 * peak
    expected = [night, night, night + 0.25 * (day - night), night + 0.5 * (day - night),
                night + 0.75 * (day - night), day, day]  # fmt: skip
    assert kw == pytest.approx(expected, rel=1e-9)


def test_weekends_scale_by_the_weekend_factor() -> None:
    sc = variant(**QUIET)
    weekday = at(sc, "10:00", "03:00", day=0)  # Wednesday
    saturday = at(sc, "10:00", "03:00", day=3)
    sunday = at(sc, "10:00", "03:00", day=4)
    monday = at(sc, "10:00", "03:00", day=5)
    assert saturday == pytest.approx(weekday * sc.base_load.weekend_factor)
    assert sunday == pytest.approx(weekday * sc.base_load.weekend_factor)
    assert monday == pytest.approx(weekday)


def test_shifts_are_in_site_local_time() -> None:
    sc = variant(start="2026-07-15T02:00:00+00:00", **QUIET)  # 10:00 in Chenzhou
    assert base_load_kw(sc, np.array([0.0]))[0] == pytest.approx(sc.base_load.peak_kw)


def test_a_shift_can_run_over_midnight() -> None:
    cfg = BaseLoad(peak_kw=100.0, night_level=0.2, shifts=[{"start": "22:00", "end": "06:00", "level": 0.9}])
    levels = daily_levels(cfg)
    assert levels[23 * 60] == 0.9 and levels[3 * 60] == 0.9 and levels[6 * 60] == 0.2 and levels[12 * 60] == 0.2


def test_noise_has_the_configured_size_and_is_slow() -> None:
    sc = variant(base_load__shifts=[], base_load__night_level=0.5, base_load__weekend_factor=1.0,
                 base_load__noise_pct=3.0)  # fmt: skip
    kw = base_load_kw(sc, np.arange(0.0, 10 * 86400.0, 60.0))
    rel = kw / (0.5 * sc.base_load.peak_kw) - 1.0
    assert 0.02 < rel.std() < 0.04
    lag1 = np.corrcoef(rel[:-1], rel[1:])[0, 1]
    assert lag1 > 0.9  # slow: a 15-minute time constant


def test_the_load_stays_positive_even_with_wild_noise() -> None:
    sc = variant(base_load__night_level=0.0, base_load__noise_pct=50.0, base_load__weekend_factor=0.0)
    kw = base_load_kw(sc, np.arange(0.0, 7 * 86400.0, 30.0))
    assert kw.min() >= 0.01 * sc.base_load.peak_kw > 0.0


def test_same_seed_same_load() -> None:
    t = np.arange(0.0, 86400.0, 5.0)
    assert np.array_equal(base_load_kw(SUMMER, t), base_load_kw(SUMMER, t))
    assert not np.array_equal(base_load_kw(SUMMER, t), base_load_kw(variant(seed=1), t))
