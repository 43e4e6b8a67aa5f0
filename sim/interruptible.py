"""An interruptible industrial load (chiller, compressor, furnace) that can be shed on request.

While running it draws ``p_kw`` times slow duty noise (AR(1) on the minute grid, 5-minute time constant,
``duty_noise_pct`` one-sigma). A shed is refused, with the reason, while it is already shed, after
``max_sheds_per_day`` sheds that site-local day, or before it has run ``min_on_s``; a restore is refused
before it has been off ``min_off_s``. After ``max_shed_s`` it restores itself. The scenario starts with
every load running long enough to be shed at once.

Rebound: on restore the load draws back ``rebound_factor`` x the energy it did not draw while shed, on
top of its normal draw, over ``rebound_s`` with a linearly decaying profile (twice the mean at the
restore, zero at the end), as a chiller pulling its water back down does. The extra energy is integrated
exactly per step. A new shed forfeits whatever rebound is still pending. Timers resolve per physics step;
times are seconds since the scenario start.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from sim.scenario import InterruptibleLoad, Scenario
from sim.state import CommandResult

DUTY_TAU_MIN = 5.0


def nominal_kw(scenario: Scenario, load: InterruptibleLoad, t_rel: np.ndarray) -> np.ndarray:
    """What the load draws while running (no shed, no rebound) at ``t_rel`` seconds after the start."""
    from sim.weather import ou_minutes  # weather builds on this module; import late to avoid a cycle

    t_min = np.asarray(t_rel, dtype=float) / 60.0
    n = math.floor(t_min.max()) + 2
    noise = ou_minutes(scenario.seed, f"load/{load.id}", n, DUTY_TAU_MIN)
    duty = 1.0 + load.duty_noise_pct / 100.0 * np.interp(t_min, np.arange(n, dtype=float), noise)
    out: np.ndarray = load.p_kw * np.clip(duty, 0.0, None)
    return out


class SheddableLoad:
    """Run/shed state machine with rebound. ``step`` integrates; the ``request_*`` methods answer commands."""

    __slots__ = (
        "_day", "_day_sheds", "_rb_e", "_rb_start", "_restore_at", "cfg", "energy_kws", "episode_kws",
        "id", "p_kw", "rebound_kws", "running", "shed_kws", "since",
    )  # fmt: skip

    def __init__(self, cfg: InterruptibleLoad, p0_kw: float = 0.0) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.running = True
        self.since = -math.inf  # when the present state (running or shed) began
        self._restore_at = math.inf
        self._day: date | None = None
        self._day_sheds = 0
        self._rb_e = 0.0  # rebound energy of the present rebound, kW·s
        self._rb_start = 0.0
        self.episode_kws = 0.0  # energy not drawn during the present/last shed
        self.shed_kws = 0.0  # lifetime energy not drawn because of sheds
        self.rebound_kws = 0.0  # lifetime extra energy drawn by rebounds
        self.energy_kws = 0.0  # lifetime energy drawn
        self.p_kw = p0_kw  # draw during the last step

    def sheds_on(self, day: date) -> int:
        return self._day_sheds if day == self._day else 0

    def request_shed(self, t: float, day: date) -> CommandResult:
        cfg = self.cfg
        if not self.running:
            return CommandResult(False, f"{self.id} is already shed")
        done = self.sheds_on(day)
        if done >= cfg.max_sheds_per_day:
            return CommandResult(False, f"max_sheds_per_day: {done} sheds today already (max {cfg.max_sheds_per_day})")
        on_for = t - self.since
        if on_for < cfg.min_on_s:
            return CommandResult(False, f"min_on_s: running for {on_for:.0f} s of the required {cfg.min_on_s:.0f} s")
        self.running = False
        self.since = t
        self._restore_at = t + cfg.max_shed_s
        self._rb_e = 0.0
        self.episode_kws = 0.0
        self._day, self._day_sheds = day, done + 1
        return CommandResult(True)

    def request_restore(self, t: float) -> CommandResult:
        if self.running:
            return CommandResult(False, f"{self.id} is not shed")
        off_for = t - self.since
        if off_for < self.cfg.min_off_s:
            return CommandResult(
                False, f"min_off_s: shed for {off_for:.0f} s of the required {self.cfg.min_off_s:.0f} s"
            )
        self._restore(t)
        return CommandResult(True)

    def _restore(self, t: float) -> None:
        self.running = True
        self.since = t
        self._restore_at = math.inf
        self._rb_e = self.cfg.rebound_factor * self.episode_kws
        self._rb_start = t

    def step(self, t0: float, dt: float, nominal: float) -> float:
        """Integrate ``dt`` seconds from ``t0`` given the running draw ``nominal``; returns the draw in kW."""
        if not self.running:
            if t0 < self._restore_at:
                self.episode_kws += nominal * dt
                self.shed_kws += nominal * dt
                self.p_kw = 0.0
                return 0.0
            self._restore(t0)
        p = nominal
        if self._rb_e:
            span = self.cfg.rebound_s
            a = (t0 - self._rb_start) / span
            b = a + dt / span
            if b >= 1.0:
                b = 1.0
            extra = self._rb_e * ((1.0 - a) ** 2 - (1.0 - b) ** 2)  # integral of the linear decay
            if b >= 1.0:
                self._rb_e = 0.0
            self.rebound_kws += extra
            p += extra / dt
        self.energy_kws += p * dt
        self.p_kw = p
        return p
