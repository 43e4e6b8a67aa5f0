"""The simulated forecaster: seeded, sharper toward the present, physically bounded."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from controller.forecast import Forecast
from sim.forecast import SimForecaster
from sim.scenario import load_scenario
from sim.weather import realised_profiles

SC = load_scenario("chenzhou-summer-weekday")
T0 = SC.local_start


def rel_error(lead_h: float) -> float:
    fc = SimForecaster(SC)
    start = T0 + timedelta(hours=10)
    f = fc.forecast(start - timedelta(hours=lead_h), start, steps=16, step_s=900)
    real = realised_profiles(SC, hours=4, step_s=900, start=start)
    real_load = real.base_load_kw + sum(real.interruptible_kw.values())
    return float(np.mean(np.abs(f.load_kw / real_load - 1)))


def test_same_seed_same_forecast_and_shapes() -> None:
    a = SimForecaster(SC).forecast(T0, T0 + timedelta(hours=6), steps=96, step_s=900)
    b = SimForecaster(SC).forecast(T0, T0 + timedelta(hours=6), steps=96, step_s=900)
    assert a.steps == 96 and set(a.pv_kw) == {p.id for p in SC.pv}
    np.testing.assert_array_equal(a.load_kw, b.load_kw)
    for pid in a.pv_kw:
        np.testing.assert_array_equal(a.pv_kw[pid], b.pv_kw[pid])
    other = SimForecaster(SC.model_copy(update={"seed": 7})).forecast(T0, T0 + timedelta(hours=6), 96, 900)
    assert not np.array_equal(a.load_kw, other.load_kw)


def test_error_shrinks_toward_the_present() -> None:
    assert rel_error(0.0) < rel_error(24.0)
    assert rel_error(0.0) < 0.03


def test_pv_stays_within_zero_and_rating() -> None:
    f = SimForecaster(SC).forecast(T0 - timedelta(hours=24), T0, steps=96, step_s=900)
    for p in SC.pv:
        assert f.pv_kw[p.id].min() >= 0
        assert f.pv_kw[p.id].max() <= p.ac_kw + 1e-9
    assert f.pv_kw[SC.pv[0].id][:20].max() == 0  # night


def test_rejects_steps_off_the_minute_grid() -> None:
    with pytest.raises(ValueError, match="multiple"):
        SimForecaster(SC).forecast(T0, T0, steps=4, step_s=90)



class _Uncached(SimForecaster):
    """Samples the realised weather anew for every forecast, as the forecaster did before its cache."""

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        self._realised = lambda m0, n: realised_profiles(self.scenario, hours=n / 60.0, step_s=60,  # type: ignore[method-assign]
                                                         start=start)  # fmt: skip
        return super().forecast(issued_at, start, steps, step_s)


def test_forecasts_from_the_cached_weather_match_a_fresh_sampling() -> None:
    """The forecaster samples the realised day once and slices it; the figures are those of sampling anew."""
    sc = load_scenario("chenzhou-summer-weekday")
    cached, fresh = SimForecaster(sc), _Uncached(sc)
    for hours in (0.0, 13.25, 47.5):  # the cache grows past its first two days on the last one
        start = sc.local_start + timedelta(hours=hours)
        issued = start - timedelta(minutes=5)
        a, b = cached.forecast(issued, start, 96, 900), fresh.forecast(issued, start, 96, 900)
        assert np.allclose(a.load_kw, b.load_kw, rtol=1e-9, atol=1e-6)
        for pid in a.pv_kw:
            assert np.allclose(a.pv_kw[pid], b.pv_kw[pid], rtol=1e-9, atol=1e-6)
