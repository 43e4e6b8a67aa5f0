"""A simulated forecaster: the realised profiles seen through a seeded, lead-dependent error.

For target time ``tau`` and issue time ``t`` (lead ``L = tau - t``)::

    forecast(tau | t) = realised(tau) * (1 + e(tau) * sigma(L))
    sigma(L) = sigma_now + (sigma_day_ahead - sigma_now) * min(1, sqrt(L / day_ahead_h))

``e`` is one smooth standard-normal field per quantity (an Ornstein-Uhlenbeck process along the day with
``correlation_min``), fixed per scenario seed: successive forecasts agree with each other and converge to
what happens as the lead shrinks, like a persistence-corrected day-ahead forecast. PV is clipped to
``[0, ac_kw]``. Same seed, same forecasts, whatever the issue times asked for.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from controller.forecast import Forecast
from sim.scenario import Scenario
from sim.weather import Profiles, ou_minutes, realised_profiles

SAMPLE_S = 60  # realised profiles are averaged from 1-minute samples


class SimForecaster:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._err = scenario.forecast_error
        self._fields: dict[str, np.ndarray] = {}
        self._profiles: Profiles | None = None  # 1-minute realised profiles from the scenario start

    def _realised(self, minute0: int, n_min: int) -> Profiles:
        """The realised profiles over ``n_min`` minutes from ``minute0``, sliced from one cached sampling.

        Sampling the weather costs more the later the day (its cloud field runs from the scenario
        start), and a rolling planner asks for it every re-plan: sample once, growing by doubling.
        """
        need = minute0 + n_min
        have = self._profiles
        if have is None or len(have.times) < need:
            length = max(need, 2 * (len(have.times) if have is not None else 0), 2 * 24 * 60)
            have = realised_profiles(self.scenario, hours=length / 60.0, step_s=SAMPLE_S)
            self._profiles = have
        return have.window(minute0, need)

    def _field(self, key: str, minute0: int, n_min: int) -> np.ndarray:
        """The error field ``e`` over ``n_min`` minutes from ``minute0`` (minutes since scenario start)."""
        need = minute0 + n_min
        have = self._fields.get(key)
        if have is None or len(have) < need:
            length = max(need, 2 * (len(have) if have is not None else 0), 2 * 24 * 60)
            have = ou_minutes(self.scenario.seed, f"forecast-{key}", length, self._err.correlation_min)
            self._fields[key] = have
        return have[minute0:need]

    def _sigma(self, lead_s: np.ndarray, now: float, day_ahead: float) -> np.ndarray:
        frac = np.minimum(1.0, np.sqrt(np.maximum(lead_s, 0.0) / (self._err.day_ahead_h * 3600.0)))
        return now + (day_ahead - now) * frac

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        if step_s % SAMPLE_S:
            raise ValueError(f"step_s must be a multiple of {SAMPLE_S} s")
        sc, e = self.scenario, self._err
        per = step_s // SAMPLE_S
        minute0 = math.floor((start - sc.start).total_seconds() / 60.0)
        n_min = steps * per
        exact = (start - sc.start).total_seconds() % SAMPLE_S == 0
        prof = (self._realised(minute0, n_min) if exact else
                realised_profiles(sc, hours=steps * step_s / 3600.0, step_s=SAMPLE_S, start=start))  # fmt: skip
        lead = np.array([(start + timedelta(minutes=i) - issued_at).total_seconds() for i in range(n_min)])
        pv_err = self._field("pv", minute0, n_min) * self._sigma(lead, e.pv_sigma_now, e.pv_sigma_day_ahead)
        load_err = self._field("load", minute0, n_min) * self._sigma(lead, e.load_sigma_now, e.load_sigma_day_ahead)

        def mean(a: np.ndarray) -> np.ndarray:
            out: np.ndarray = a[:n_min].reshape(steps, per).mean(axis=1)
            return out

        rated = {p.id: p.ac_kw for p in sc.pv}
        pv = {pid: mean(np.clip(a * (1 + pv_err), 0.0, rated[pid])) for pid, a in prof.pv_kw.items()}
        inter = {lid: mean(a * (1 + load_err)) for lid, a in prof.interruptible_kw.items()}
        base = prof.base_load_kw * (1 + load_err)
        load = mean(base + sum(prof.interruptible_kw.values(), np.zeros(n_min)) * (1 + load_err))
        return Forecast(issued_at=issued_at, start=start, step_s=step_s, pv_kw=pv, load_kw=load,
                        interruptible_kw=inter)
