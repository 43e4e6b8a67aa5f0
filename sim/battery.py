"""A battery energy storage system as seen from its AC terminals. Sign: + discharge, - charge.

Charging at ``p < 0`` stores ``|p| x eta_charge``; discharging at ``p > 0`` removes ``p / eta_discharge``.
Power tapers linearly to zero within ``derate_band_pct`` of ``soc_min``/``soc_max`` and is also capped so
that no step can cross a bound: the state of charge never leaves ``[soc_min, soc_max]``, whatever the
commands. A device-side watchdog idles the battery (setpoint 0) when no setpoint arrives within
``watchdog_s`` (or the revert time sent with the last setpoint) and flags it until the next setpoint.
Timers are resolved at physics-step granularity. Times are seconds since the scenario start.
"""

from __future__ import annotations

import math

from sim.scenario import Battery


class Bess:
    """SoC, power and counters of one battery."""

    __slots__ = (
        "_band",
        "_deadline",
        "_e",
        "_e_max",
        "_e_min",
        "_eta_c",
        "_eta_d",
        "_pc_max",
        "_pd_max",
        "_ramp",
        "cap_kwh",
        "cfg",
        "charge_kwh",
        "discharge_kwh",
        "e_high",
        "e_low",
        "id",
        "p_kw",
        "setpoint_kw",
        "watchdog_tripped",
    )  # fmt: skip

    def __init__(self, cfg: Battery) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.cap_kwh = cfg.capacity_kwh
        self._e_min = cfg.capacity_kwh * cfg.soc_min_pct / 100.0
        self._e_max = cfg.capacity_kwh * cfg.soc_max_pct / 100.0
        self._band = cfg.capacity_kwh * cfg.derate_band_pct / 100.0
        self._eta_c = cfg.eta_charge
        self._eta_d = cfg.eta_discharge
        self._pc_max = cfg.p_charge_max_kw
        self._pd_max = cfg.p_discharge_max_kw
        self._ramp = cfg.ramp_kw_per_s
        self._e = cfg.capacity_kwh * cfg.soc_init_pct / 100.0
        self._deadline = math.inf  # the watchdog arms with the first setpoint
        self.e_low = self.e_high = self._e  # extremes of stored energy so far
        self.p_kw = 0.0
        self.setpoint_kw = 0.0
        self.watchdog_tripped = False
        self.charge_kwh = 0.0  # lifetime AC energy in
        self.discharge_kwh = 0.0  # lifetime AC energy out

    @property
    def energy_kwh(self) -> float:
        return self._e

    @property
    def soc_pct(self) -> float:
        return 100.0 * self._e / self.cap_kwh

    def available_kw(self) -> tuple[float, float]:
        """(charge, discharge) power the battery can take/give at the present SoC, after derating."""
        e, band = self._e, self._band
        if band > 0:
            f_c = min(1.0, max(0.0, (self._e_max - e) / band))
            f_d = min(1.0, max(0.0, (e - self._e_min) / band))
        else:
            f_c = 1.0 if e < self._e_max else 0.0
            f_d = 1.0 if e > self._e_min else 0.0
        return self._pc_max * f_c, self._pd_max * f_d

    def set_power(self, t: float, p_kw: float, revert_s: float | None = None) -> None:
        """Accept a setpoint (clamped to the ratings) and re-arm the watchdog."""
        if not math.isfinite(p_kw):
            raise ValueError(f"battery {self.id}: setpoint must be a finite number, got {p_kw!r}")
        if revert_s is not None and not (math.isfinite(revert_s) and revert_s > 0):
            raise ValueError(f"battery {self.id}: revert_s must be positive or None, got {revert_s!r}")
        self.setpoint_kw = min(self._pd_max, max(-self._pc_max, float(p_kw)))
        self.watchdog_tripped = False
        self._deadline = t + (self.cfg.watchdog_s if revert_s is None else revert_s)

    def step(self, t0: float, dt: float) -> float:
        """Integrate ``dt`` seconds from ``t0``; returns the AC power in kW."""
        if t0 >= self._deadline:
            self.setpoint_kw = 0.0
            self.watchdog_tripped = True
            self._deadline = math.inf
        sp = self.setpoint_kw
        p = self.p_kw
        if sp == 0.0 and p == 0.0:
            return 0.0
        e = self._e
        h = dt / 3600.0
        band = self._band
        room_d = e - self._e_min
        room_c = self._e_max - e
        lim_d, lim_c = self._pd_max, self._pc_max
        if room_d < band:  # linear derating near empty
            lim_d *= room_d / band
        if room_c < band:  # and near full
            lim_c *= room_c / band
        # no step may cross a bound, whatever the band
        x = room_d * self._eta_d / h
        if x < lim_d:
            lim_d = x
        x = room_c / self._eta_c / h
        if x < lim_c:
            lim_c = x
        target = lim_d if sp > lim_d else (-lim_c if sp < -lim_c else sp)
        d = self._ramp * dt
        p = p + d if target > p + d else (p - d if target < p - d else target)
        if p > lim_d:  # the SoC limits override the ramp
            p = lim_d
        elif p < -lim_c:
            p = -lim_c
        if p > 0.0:
            e -= p * h / self._eta_d
            self.discharge_kwh += p * h
            if e < self.e_low:
                e = max(e, self._e_min)
                self.e_low = e
        elif p < 0.0:
            e -= p * h * self._eta_c
            self.charge_kwh -= p * h
            if e > self.e_high:
                e = min(e, self._e_max)
                self.e_high = e
        self._e = e
        self.p_kw = p
        return p
