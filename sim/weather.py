"""Irradiance on each PV plant and the realised profiles of a scenario.

Clear-sky irradiance (pvlib, Ineichen with the scenario's Linke turbidity) is transposed to each plant's
plane of array and multiplied by a seeded clear-sky index. The index comes from one site-wide cloud field:
a stationary Ornstein-Uhlenbeck variable ``x`` on a 1-minute grid; the sky is cloudy where ``x`` exceeds
the quantile that makes the cloudy share equal ``cloudiness``, with a smooth edge, a cloud transmittance
that wanders between 0.25 and 0.45, and up to 10 % enhancement just outside a cloud edge. Each plant sees
the field with its own seeded lag of up to 3 minutes (clouds pass over the roofs one after the other).

Everything is a deterministic function of absolute time since ``scenario.start``: the 1-minute noise is
drawn per day from ``(seed, crc32(key), day)``, so a value never depends on the horizon asked for, and
the park (which generates a day at a time) and a forecaster see the same numbers.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import numpy as np
import pandas as pd
import pvlib

from sim import base_load, interruptible, pv
from sim.scenario import Scenario

CLOUD_EDGE_WIDTH = 0.15  # width of the cloud edge in units of the field's standard deviation
EDGE_ENHANCEMENT = 0.10  # clear-sky index just outside a cloud edge reaches 1.1
KC_CLIP = (0.05, 1.1)
MAX_LAG_S = 180.0
_DAY_MIN = 1440


def rng_for(seed: int, key: str, day: int = 0) -> np.random.Generator:
    """A generator that depends only on the scenario seed, a stable key (a device id) and a day index."""
    return np.random.default_rng([seed % 2**63, zlib.crc32(key.encode()), day])


def ou_minutes(seed: int, key: str, n_min: int, tau_min: float) -> np.ndarray:
    """Stationary N(0, 1) AR(1) samples at minutes 0..n_min-1 after the scenario start.

    Innovations are drawn per day, so the first values never change when more are asked for.
    """
    days = max(1, -(-n_min // _DAY_MIN))
    eps = np.concatenate([rng_for(seed, key, d).standard_normal(_DAY_MIN) for d in range(days)])
    a = math.exp(-1.0 / tau_min)
    b = math.sqrt(1.0 - a * a)
    vals = eps[: max(1, n_min)].tolist()
    x = vals[0]
    out = [x]
    for e in vals[1:]:
        x = a * x + b * e
        out.append(x)
    return np.asarray(out[:n_min])


def _cloud_threshold(cloudiness: float) -> float:
    if cloudiness <= 0.0:
        return 9.0
    if cloudiness >= 1.0:
        return -9.0
    return NormalDist().inv_cdf(1.0 - cloudiness)


def clear_sky_index(scenario: Scenario, n_min: int) -> np.ndarray:
    """Site clear-sky index at minutes 0..n_min-1 after the scenario start."""
    w = scenario.weather
    x = ou_minutes(scenario.seed, "weather/cloud", n_min, w.cloud_timescale_min)
    y = ou_minutes(scenario.seed, "weather/optical-depth", n_min, w.cloud_timescale_min / 2)
    theta = _cloud_threshold(w.cloudiness)
    cover = 1.0 / (1.0 + np.exp(-(x - theta) / CLOUD_EDGE_WIDTH))
    edge = np.exp(-(((x - theta + 2 * CLOUD_EDGE_WIDTH) / (2 * CLOUD_EDGE_WIDTH)) ** 2))
    kc_cloud = 0.35 + 0.10 * np.tanh(y)
    kc = (1.0 - cover) * (1.0 + EDGE_ENHANCEMENT * edge) + cover * kc_cloud
    out: np.ndarray = np.clip(kc, *KC_CLIP)
    return out


def plant_lag_s(scenario: Scenario, plant_id: str) -> float:
    """Seeded delay with which the site's cloud field reaches this plant."""
    return float(rng_for(scenario.seed, f"pv/{plant_id}").uniform(0.0, MAX_LAG_S))


def ambient_c(scenario: Scenario, local: pd.DatetimeIndex) -> np.ndarray:
    """Air temperature: a daily cosine peaking at 15:00 around a mean (configured or seasonal default)."""
    w = scenario.weather
    if w.ambient_mean_c is None:
        # Subtropical monsoon climate (Chenzhou): about 6 °C in January, 29 °C in July.
        doy = np.asarray(local.day_of_year, dtype=float)
        peak_doy = 200.0 if scenario.site.latitude_deg >= 0 else 17.0
        mean = 18.0 + 11.5 * np.cos(2 * np.pi * (doy - peak_doy) / 365.0)
    else:
        mean = np.full(len(local), w.ambient_mean_c)
    hour = np.asarray(local.hour + local.minute / 60.0, dtype=float)
    return mean + 0.5 * w.ambient_range_c * np.cos(2 * np.pi * (hour - 15.0) / 24.0)


def _minute_index(scenario: Scenario, m0: int, m1: int) -> pd.DatetimeIndex:
    first = scenario.start.astimezone(UTC) + timedelta(minutes=m0)
    return pd.date_range(first, periods=m1 - m0, freq="1min").tz_convert(scenario.site.timezone)


def poa_minutes(scenario: Scenario, m0: int, m1: int) -> dict[str, np.ndarray]:
    """Clear-sky plane-of-array irradiance (W/m²) per plant at minutes m0..m1-1."""
    site = scenario.site
    times = _minute_index(scenario, m0, m1)
    loc = pvlib.location.Location(site.latitude_deg, site.longitude_deg, site.timezone, site.altitude_m)
    sp = loc.get_solarposition(times)
    dni_extra = pvlib.irradiance.get_extra_radiation(np.asarray(times.day_of_year))
    cs = loc.get_clearsky(
        times, model="ineichen", solar_position=sp, dni_extra=pd.Series(dni_extra, index=times),
        linke_turbidity=scenario.weather.linke_turbidity,
    )  # fmt: skip
    out: dict[str, np.ndarray] = {}
    for plant in scenario.pv:
        poa = pvlib.irradiance.get_total_irradiance(
            plant.tilt_deg, plant.azimuth_deg, sp["apparent_zenith"], sp["azimuth"],
            cs["dni"], cs["ghi"], cs["dhi"],
        )["poa_global"]  # fmt: skip
        out[plant.id] = np.nan_to_num(np.clip(poa.to_numpy(dtype=float), 0.0, None))
    return out


@dataclass(frozen=True, eq=False)
class Profiles:
    """What the park will realise, sampled at ``times`` (the start of each step, site-local).

    ``pv_kw`` is each plant's available AC power (no curtailment), ``interruptible_kw`` each load's draw
    while running (no shed, no rebound). Arrays are read-only.
    """

    start: datetime
    step_s: float
    times: pd.DatetimeIndex
    poa_w_m2: dict[str, np.ndarray]
    pv_kw: dict[str, np.ndarray]
    base_load_kw: np.ndarray
    interruptible_kw: dict[str, np.ndarray]
    ambient_c: np.ndarray

    def __post_init__(self) -> None:
        arrays = [self.base_load_kw, self.ambient_c, *self.pv_kw.values(), *self.poa_w_m2.values()]
        for a in [*arrays, *self.interruptible_kw.values()]:
            a.flags.writeable = False

    @property
    def pv_total_kw(self) -> np.ndarray:
        total = np.zeros(len(self.times))
        for a in self.pv_kw.values():
            total = total + a
        return total

    def window(self, i: int, j: int) -> Profiles:
        """Samples ``[i, j)`` (views of the same read-only arrays)."""
        if not 0 <= i < j <= len(self.times):
            raise ValueError(f"window {i}..{j} outside the {len(self.times)} samples")
        return Profiles(
            start=self.times[i].to_pydatetime(), step_s=self.step_s, times=self.times[i:j],
            poa_w_m2={k: a[i:j] for k, a in self.poa_w_m2.items()}, pv_kw={k: a[i:j] for k, a in self.pv_kw.items()},
            base_load_kw=self.base_load_kw[i:j],
            interruptible_kw={k: a[i:j] for k, a in self.interruptible_kw.items()}, ambient_c=self.ambient_c[i:j],
        )  # fmt: skip

    def mean_over(self, period_s: float) -> Profiles:
        """Block averages over ``period_s`` (a whole multiple of ``step_s``), e.g. 900 s for an optimizer."""
        k = round(period_s / self.step_s)
        if k < 1 or abs(k * self.step_s - period_s) > 1e-9 or len(self.times) % k:
            raise ValueError(f"period {period_s} s must be a multiple of {self.step_s} s dividing the horizon")

        def avg(a: np.ndarray) -> np.ndarray:
            out: np.ndarray = a.reshape(-1, k).mean(axis=1)
            return out

        return Profiles(
            start=self.start, step_s=float(period_s), times=self.times[::k],
            poa_w_m2={i: avg(a) for i, a in self.poa_w_m2.items()},
            pv_kw={i: avg(a) for i, a in self.pv_kw.items()},
            base_load_kw=avg(self.base_load_kw),
            interruptible_kw={i: avg(a) for i, a in self.interruptible_kw.items()},
            ambient_c=avg(self.ambient_c),
        )  # fmt: skip


def sample(scenario: Scenario, t_rel: np.ndarray, step_s: float) -> Profiles:
    """Profiles at ``t_rel`` seconds after ``scenario.start`` (ascending, >= 0, ``step_s`` apart)."""
    if len(t_rel) == 0:
        raise ValueError("no sample times")
    if t_rel.min() < 0:
        raise ValueError("profiles exist only from the scenario start on")
    t_min = t_rel / 60.0
    m0 = math.floor(t_min.min())
    m1 = math.floor(t_min.max() + MAX_LAG_S / 60.0) + 2
    grid = np.arange(m0, m1, dtype=float)
    kc_site = clear_sky_index(scenario, m1)
    poa_clear = poa_minutes(scenario, m0, m1)
    local_min = _minute_index(scenario, m0, m1)
    amb = np.interp(t_min, grid, ambient_c(scenario, local_min))
    poa_out: dict[str, np.ndarray] = {}
    pv_out: dict[str, np.ndarray] = {}
    for plant in scenario.pv:
        lag_min = plant_lag_s(scenario, plant.id) / 60.0
        kc = np.interp(t_min + lag_min, np.arange(m1, dtype=float), kc_site)
        poa = np.interp(t_min, grid, poa_clear[plant.id]) * kc
        poa_out[plant.id] = poa
        pv_out[plant.id] = pv.available_ac_kw(plant, poa, amb)
    start_utc = pd.Timestamp(scenario.start).tz_convert("UTC")
    times = (start_utc + pd.to_timedelta(t_rel, unit="s")).tz_convert(scenario.site.timezone)
    return Profiles(
        start=times[0].to_pydatetime(),
        step_s=float(step_s),
        times=times,
        poa_w_m2=poa_out,
        pv_kw=pv_out,
        base_load_kw=base_load.base_load_kw(scenario, t_rel),
        interruptible_kw={ld.id: interruptible.nominal_kw(scenario, ld, t_rel) for ld in scenario.interruptible_loads},
        ambient_c=amb,
    )


def realised_profiles(
    scenario: Scenario, hours: float, step_s: float | None = None, start: datetime | None = None
) -> Profiles:
    """The scenario's realised PV availability and loads over ``[start, start + hours)``.

    ``step_s`` defaults to the scenario's physics step, ``start`` to the scenario start (it may not be
    earlier). Values are instantaneous samples at each step's start; use :meth:`Profiles.mean_over` for
    interval means.
    """
    step = scenario.physics_step_s if step_s is None else step_s
    if step <= 0 or hours <= 0:
        raise ValueError("hours and step_s must be positive")
    offset = 0.0 if start is None else (start - scenario.start).total_seconds()
    n = max(1, math.ceil(hours * 3600.0 / step - 1e-9))
    return sample(scenario, offset + np.arange(n) * step, step)
