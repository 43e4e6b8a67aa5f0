"""The park's industrial base load: production shifts, weekends and slow noise.

Per site-local minute the load sits at ``level x peak_kw`` inside a shift (``night_level`` outside; where
shifts overlap the higher level wins; a shift whose end is before its start runs over midnight), times
``weekend_factor`` on Saturdays and Sundays. A centred moving average of ``ramp_min`` minutes turns every
change into a linear ramp of that length. Slow multiplicative noise (AR(1) on the minute grid, 15-minute
time constant, ``noise_pct`` one-sigma) rides on top. The load never drops below 1 % of ``peak_kw``: a
park always keeps some auxiliaries running. Minute values are interpolated to the requested times.
"""

from __future__ import annotations

import math
from datetime import UTC, timedelta

import numpy as np
import pandas as pd

from sim.scenario import BaseLoad, Scenario

NOISE_TAU_MIN = 15.0
FLOOR_SHARE = 0.01


def _hhmm(v: str) -> int:
    hh, _, mm = v.partition(":")
    return int(hh) * 60 + int(mm)


def daily_levels(cfg: BaseLoad) -> np.ndarray:
    """Share of peak for each of the 1440 minutes of a weekday, before ramps and noise."""
    level = np.full(1440, cfg.night_level)
    for shift in cfg.shifts:
        start, end = _hhmm(shift.start), _hhmm(shift.end)
        minutes = np.arange(start, end) if start < end else np.r_[np.arange(start, 1440), np.arange(end)]
        level[minutes] = np.maximum(level[minutes], shift.level)
    return level


def base_load_kw(scenario: Scenario, t_rel: np.ndarray) -> np.ndarray:
    """Base load in kW at ``t_rel`` seconds after the scenario start."""
    from sim.weather import ou_minutes  # weather builds on this module; import late to avoid a cycle

    cfg = scenario.base_load
    t_min = np.asarray(t_rel, dtype=float) / 60.0
    half = max(1, round(cfg.ramp_min)) // 2 if cfg.ramp_min > 0 else 0
    width = max(1, round(cfg.ramp_min)) if cfg.ramp_min > 0 else 1
    m0 = math.floor(t_min.min()) - width
    m1 = math.floor(t_min.max()) + width + 2
    first = scenario.start.astimezone(UTC) + timedelta(minutes=m0)
    local = pd.date_range(first, periods=m1 - m0, freq="1min").tz_convert(scenario.site.timezone)
    minute_of_day = np.asarray(local.hour * 60 + local.minute)
    weekend = np.asarray(local.day_of_week >= 5)
    level = daily_levels(cfg)[minute_of_day] * np.where(weekend, cfg.weekend_factor, 1.0)
    if width > 1:  # centred moving average: a step becomes a linear ramp of `width` minutes
        cs = np.r_[0.0, np.cumsum(level)]
        idx = np.arange(half, len(level) - width + half + 1)
        smooth = (cs[idx - half + width] - cs[idx - half]) / width
        grid = np.arange(m0 + half, m0 + half + len(smooth), dtype=float)
    else:
        smooth = level
        grid = np.arange(m0, m1, dtype=float)
    n_noise = int(grid[-1]) + 1
    noise = ou_minutes(scenario.seed, "base-load", max(1, n_noise), NOISE_TAU_MIN)
    noise_at = np.interp(t_min, np.arange(n_noise, dtype=float), noise)
    kw = cfg.peak_kw * np.interp(t_min, grid, smooth) * (1.0 + cfg.noise_pct / 100.0 * noise_at)
    out: np.ndarray = np.maximum(kw, FLOOR_SHARE * cfg.peak_kw)
    return out
