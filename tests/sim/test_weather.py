"""Irradiance, the cloud process and the realised profiles: physical shape, determinism, speed."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from sim.scenario import Scenario, load_scenario
from sim.weather import KC_CLIP, clear_sky_index, ou_minutes, realised_profiles

SUMMER = load_scenario("chenzhou-summer-weekday")
WINTER = load_scenario("chenzhou-winter-weekday")


def variant(base: Scenario = SUMMER, **changes: Any) -> Scenario:
    """A copy of ``base`` with ``section__field=value`` changes (list items by index: ``pv__0__tilt_deg``)."""
    data = base.model_dump(mode="json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(leaf) if isinstance(node, list) else leaf] = value
    return Scenario.model_validate(data)


def _hours(times: Any) -> np.ndarray:
    return np.asarray(times.hour + times.minute / 60.0 + times.second / 3600.0)


def test_clear_sky_pv_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    sc = variant(weather__cloudiness=0.0)
    prof = realised_profiles(sc, 24, 60)
    hours = _hours(prof.times)
    night = (hours < 5.0) | (hours >= 20.0)
    assert np.all(prof.pv_total_kw[night] == 0.0)
    assert prof.pv_total_kw[~night].max() > 0.5 * sum(p.ac_kw for p in sc.pv)
    # solar noon at 113° E in UTC+8 in mid-July: 12:00 + 28 min + ~6 min equation of time
    south = next(p.id for p in sc.pv if p.azimuth_deg == 180.0)
    assert 12.4 <= hours[np.argmax(prof.poa_w_m2[south])] <= 12.75
    assert 11.75 <= hours[np.argmax(prof.pv_total_kw)] <= 13.25


def test_clear_sky_is_smooth_and_tilt_matters_in_winter() -> None:
    sc = variant(WINTER, weather__cloudiness=0.0, pv__0__tilt_deg=0.0, pv__1__tilt_deg=30.0, pv__1__azimuth_deg=180.0)
    prof = realised_profiles(sc, 24, 60)
    flat, tilted = prof.poa_w_m2[sc.pv[0].id], prof.poa_w_m2[sc.pv[1].id]
    assert tilted.max() > 1.2 * flat.max()  # low January sun: a south tilt catches more
    assert np.abs(np.diff(prof.pv_kw[sc.pv[0].id])).max() < 0.05 * sc.pv[0].ac_kw  # no cloud jumps


def test_clear_sky_index_stays_physical_and_follows_cloudiness() -> None:
    n = 30 * 1440
    means = []
    for cloudiness in (0.0, 0.25, 0.5, 1.0):
        kc = clear_sky_index(variant(weather__cloudiness=cloudiness), n)
        assert KC_CLIP[0] <= kc.min() and kc.max() <= KC_CLIP[1]
        means.append(kc.mean())
        if cloudiness == 0.0:
            assert kc.min() > 0.999
        if cloudiness == 0.5:
            assert 0.35 < np.mean(kc < 0.7) < 0.65  # cloudy about half the time
    assert means == sorted(means, reverse=True)
    assert means[-1] < 0.5
    assert clear_sky_index(variant(weather__cloudiness=0.3), n).max() > 1.02  # cloud-edge enhancement


def test_ou_noise_is_standard_and_horizon_independent() -> None:
    x = ou_minutes(7, "k", 20 * 1440, 20.0)
    assert abs(x.mean()) < 0.2 and 0.8 < x.std() < 1.2
    assert np.array_equal(ou_minutes(7, "k", 1000, 20.0), x[:1000])
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 == pytest.approx(np.exp(-1 / 20.0), abs=0.02)


def test_same_seed_same_profiles_other_seed_other_profiles() -> None:
    a = realised_profiles(SUMMER, 24, 10)
    b = realised_profiles(SUMMER, 24, 10)
    c = realised_profiles(variant(seed=SUMMER.seed + 1), 24, 10)
    for pid in a.pv_kw:
        assert np.array_equal(a.pv_kw[pid], b.pv_kw[pid])
        assert not np.array_equal(a.pv_kw[pid], c.pv_kw[pid])
    assert np.array_equal(a.base_load_kw, b.base_load_kw)
    assert not np.array_equal(a.base_load_kw, c.base_load_kw)
    for lid in a.interruptible_kw:
        assert np.array_equal(a.interruptible_kw[lid], b.interruptible_kw[lid])
        assert not np.array_equal(a.interruptible_kw[lid], c.interruptible_kw[lid])


def test_plants_see_different_clouds_from_the_same_field() -> None:
    prof = realised_profiles(SUMMER, 24, 60)
    kc = {p.id: prof.poa_w_m2[p.id] for p in SUMMER.pv}
    a, b = list(kc.values())[:2]
    day = (a > 50) & (b > 50)
    assert not np.allclose(a[day] / a[day].max(), b[day] / b[day].max())
    assert np.corrcoef(a[day], b[day])[0, 1] > 0.7  # but the same sky


def test_a_later_start_gives_the_same_values() -> None:
    two_days = realised_profiles(SUMMER, 48, 30)
    second = realised_profiles(SUMMER, 24, 30, start=SUMMER.start + timedelta(hours=24))
    n = len(second.times)
    assert second.times[0] == two_days.times[n]
    for pid in second.pv_kw:
        np.testing.assert_allclose(second.pv_kw[pid], two_days.pv_kw[pid][n:], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(second.base_load_kw, two_days.base_load_kw[n:], rtol=1e-12)


def test_profiles_before_the_start_are_refused() -> None:
    with pytest.raises(ValueError, match="scenario start"):
        realised_profiles(SUMMER, 1, 60, start=SUMMER.start - timedelta(hours=1))


def test_profiles_are_read_only_and_times_are_local() -> None:
    prof = realised_profiles(SUMMER, 1, 60)
    with pytest.raises(ValueError):
        prof.base_load_kw[0] = 0.0
    assert str(prof.times.tz) == SUMMER.site.timezone
    assert len(prof.times) == 60 and prof.step_s == 60.0


def test_mean_over_averages_blocks() -> None:
    fine = realised_profiles(SUMMER, 2, 60)
    coarse = fine.mean_over(900)
    assert len(coarse.times) == 8 and coarse.step_s == 900.0
    np.testing.assert_allclose(coarse.base_load_kw[1], fine.base_load_kw[15:30].mean())
    with pytest.raises(ValueError):
        fine.mean_over(90)


def test_ambient_default_is_seasonal_and_configurable() -> None:
    summer = realised_profiles(SUMMER, 24, 600).ambient_c
    winter = realised_profiles(WINTER, 24, 600).ambient_c
    assert summer.mean() > winter.mean() + 15
    assert summer.max() - summer.min() == pytest.approx(SUMMER.weather.ambient_range_c, abs=0.2)
    fixed = realised_profiles(variant(weather__ambient_mean_c=12.0), 24, 600).ambient_c
    assert fixed.mean() == pytest.approx(12.0, abs=0.1)


def test_a_day_at_one_second_generates_fast() -> None:
    t0 = time.perf_counter()
    prof = realised_profiles(SUMMER, 24, 1.0)
    elapsed = time.perf_counter() - t0
    assert len(prof.times) == 86400
    assert elapsed < 0.5 * len(SUMMER.pv)  # generous: ~0.1 s measured for the whole park
