"""A PV plant: what it could produce, and an inverter that follows an active-power limit.

The limit has SunSpec ``WMaxLimPct`` semantics: a percentage of the AC rating, enabled or not, with an
optional revert timeout (``WMaxLimPct_RvrtTms``) after which the plant goes back to 100 %. The inverter
moves an *effective* limit toward the commanded one at ``ramp_pct_per_s``; on a new command the ramp
starts from the present output (so lowering the limit below the output ramps the output down at once,
and raising it ramps up from the old limit). Output is ``min(available, effective limit)``, so it never
exceeds what the sun gives and, once the ramp is done, never exceeds the limit.
"""

from __future__ import annotations

import math

import numpy as np

from sim.scenario import PvPlant

STC_W_M2 = 1000.0


def available_ac_kw(plant: PvPlant, poa_w_m2: np.ndarray, ambient_c: np.ndarray) -> np.ndarray:
    """AC power the plant could produce: DC rating x POA/1000 x (1 - losses) x temperature derate, capped.

    Cell temperature follows the NOCT model, ``T_amb + POA/800 x (NOCT - 20)``.
    """
    poa = np.clip(np.asarray(poa_w_m2, dtype=float), 0.0, None)
    cell_c = ambient_c + poa / 800.0 * (plant.noct_c - 20.0)
    derate = 1.0 + plant.temp_coeff_pct_per_c / 100.0 * (cell_c - 25.0)
    p = plant.dc_kwp * poa / STC_W_M2 * (1.0 - plant.losses_pct / 100.0) * np.clip(derate, 0.0, None)
    out: np.ndarray = np.clip(p, 0.0, plant.ac_kw)
    return out


class Inverter:
    """The controllable state of one plant. Times are seconds since the scenario start."""

    __slots__ = ("_eff", "_ramp", "_revert_at", "_target", "ac_kw", "energy_kws", "id", "limit_pct", "p_kw")

    def __init__(self, plant: PvPlant, p0_kw: float = 0.0) -> None:
        self.id = plant.id
        self.ac_kw = plant.ac_kw
        self._ramp = plant.ramp_pct_per_s / 100.0 * plant.ac_kw  # kW per second
        self.limit_pct: float | None = None  # None: no limit enabled
        self._target = plant.ac_kw
        self._eff = plant.ac_kw
        self._revert_at = math.inf
        self.energy_kws = 0.0  # lifetime AC energy, kW·s
        self.p_kw = p0_kw  # output during the last step

    @property
    def energy_kwh(self) -> float:
        return self.energy_kws / 3600.0

    @property
    def effective_limit_kw(self) -> float:
        return self._eff

    def set_limit(self, t: float, limit_pct: float | None, revert_s: float | None = None) -> None:
        """Enable a limit (percent of ``ac_kw``) or lift it (``None``); ``revert_s`` arms the revert timer."""
        if limit_pct is None:
            self.limit_pct = None
            self._target = self.ac_kw
            self._revert_at = math.inf
            return
        if not (math.isfinite(limit_pct) and 0.0 <= limit_pct <= 100.0):
            raise ValueError(f"PV {self.id}: limit_pct must be within 0..100, got {limit_pct!r}")
        if revert_s is not None and not (math.isfinite(revert_s) and revert_s > 0):
            raise ValueError(f"PV {self.id}: revert_s must be positive or None, got {revert_s!r}")
        self.limit_pct = float(limit_pct)
        self._target = self.ac_kw * limit_pct / 100.0
        self._eff = min(self._eff, max(self.p_kw, self._target))
        self._revert_at = math.inf if revert_s is None else t + revert_s

    def step(self, t0: float, dt: float, avail: float) -> float:
        """Integrate ``dt`` seconds from ``t0`` with ``avail`` kW available; returns the output in kW."""
        if t0 >= self._revert_at:
            self.limit_pct = None
            self._target = self.ac_kw
            self._revert_at = math.inf
        eff = self._eff
        target = self._target
        if eff != target:
            d = self._ramp * dt
            eff = min(target, eff + d) if eff < target else max(target, eff - d)
            self._eff = eff
        p = avail if avail < eff else eff
        self.energy_kws += p * dt
        self.p_kw = p
        return p
