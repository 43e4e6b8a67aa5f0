"""Ground-truth accounting of a simulated run: KPI counters updated every physics substep, and 60-s rows.

The KPIs are what the park really did, measured at the physics step, not what a controller believes.
Definitions (energies in kWh):

- ``green_utilization``: PV used or stored on site / PV available. Export is charged to PV first, so a
  kWh of PV counts as used only when it did not leave the park; curtailment counts against it too.
- ``self_sufficiency``: 1 - import / load. Undefined ratios (nothing available, no load) are 0.
- ``energy_cost_cny``: import x the time-of-use price - export x the export price, priced per substep.
- ``peak_import_kw``: the largest 15-minute mean import over clock-aligned quarter hours (the demand-charge
  basis); the quarter hour in progress counts as its energy so far / 15 min, a lower bound until it ends.
  ``demand_charge_cny`` is that peak x the tariff's monthly rate, kept apart from the energy cost.
- violation seconds: time with grid power above ``import_cap + tolerance`` or below
  ``-(export_cap + tolerance)``.
- ``energy_balance_error_kwh``: load - PV - discharge + charge - import + export, from the device counters
  and the meter; it must stay at rounding level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from parkctl.tariff import PeriodKind
from sim.battery import Bess
from sim.interruptible import SheddableLoad
from sim.pv import Inverter
from sim.scenario import Scenario

if TYPE_CHECKING:
    import pandas as pd

DEMAND_WINDOW_S = 900.0
_EPS = 1e-7  # seconds of float slack when comparing times


class TariffTable:
    """The tariff looked up by (month, minute of day): price lookups in the hot path cost an index."""

    def __init__(self, scenario: Scenario) -> None:
        t = scenario.tariff
        self.price = np.empty((12, 1440))
        self.kind: list[list[PeriodKind]] = [[] for _ in range(12)]
        for season in t.seasons:
            kinds: list[PeriodKind] = ["flat"] * 1440
            for w in season.windows:  # validated to tile the day exactly
                kinds[w.start_min : w.end_min] = [w.kind] * (w.end_min - w.start_min)
            for month in season.months:
                self.kind[month - 1] = kinds
                self.price[month - 1] = [t.flat_cny_per_kwh * t.ratios[k] for k in kinds]

    def prices(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Import prices at site-local ``times`` (a profile's time axis)."""
        return np.asarray(self.price[np.asarray(times.month) - 1, np.asarray(times.hour * 60 + times.minute)])

    def price_at(self, local: datetime) -> float:
        return float(self.price[local.month - 1, local.hour * 60 + local.minute])

    def period_at(self, local: datetime) -> PeriodKind:
        return self.kind[local.month - 1][local.hour * 60 + local.minute]


class Kpi:
    """Running sums over the substeps, in kW·s unless named otherwise."""

    __slots__ = (
        "_exp_lim", "_exp_price", "_imp_lim", "_win", "_win_end", "base", "cost", "elapsed_s", "exp", "green",
        "il", "imp", "peak_inst_kw", "peak_win_kws", "pv", "pv_av", "viol_exp_s", "viol_imp_s",
    )  # fmt: skip

    def __init__(self, scenario: Scenario, first_window_end_s: float) -> None:
        g = scenario.grid
        self._imp_lim = g.import_cap_kw + g.violation_tolerance_kw
        self._exp_lim = -(g.export_cap_kw + g.violation_tolerance_kw)
        self._exp_price = scenario.tariff.export_cny_per_kwh
        self._win_end = first_window_end_s
        self._win = 0.0
        self.pv_av = self.pv = self.base = self.il = self.imp = self.exp = self.green = 0.0
        self.cost = 0.0  # CNY x 3600 (kW·s x CNY/kWh)
        self.peak_inst_kw = self.peak_win_kws = 0.0
        self.viol_imp_s = self.viol_exp_s = self.elapsed_s = 0.0

    def add(self, t0: float, dt: float, pv_av: float, pv: float, base: float, il: float, g: float,
            price: float) -> None:  # fmt: skip
        """Account one substep ``[t0, t0 + dt)`` with powers in kW and the import price in CNY/kWh."""
        self.elapsed_s += dt
        self.pv_av += pv_av * dt
        self.pv += pv * dt
        self.base += base * dt
        self.il += il * dt
        if t0 >= self._win_end - _EPS:
            self._close_windows(t0)
        if g > 0.0:
            e = g * dt
            self.imp += e
            self.cost += e * price
            self._win += e
            self.green += pv * dt
            if g > self.peak_inst_kw:
                self.peak_inst_kw = g
            if g > self._imp_lim:
                self.viol_imp_s += dt
        else:
            e = -g * dt
            self.exp += e
            self.cost -= e * self._exp_price
            if pv + g > 0.0:  # export is charged to PV first
                self.green += (pv + g) * dt
            if g < self._exp_lim:
                self.viol_exp_s += dt

    def _close_windows(self, t0: float) -> None:
        while t0 >= self._win_end - _EPS:
            self.peak_win_kws = max(self.peak_win_kws, self._win)
            self._win = 0.0
            self._win_end += DEMAND_WINDOW_S

    @property
    def peak_import_kw(self) -> float:
        return max(self.peak_win_kws, self._win) / DEMAND_WINDOW_S

    def report(
        self, scenario: Scenario, inverters: Sequence[Inverter], batteries: Sequence[Bess],
        loads: Sequence[SheddableLoad],
    ) -> dict[str, float]:  # fmt: skip
        """The KPI dictionary (see the module docstring)."""
        h = 3600.0
        pv_av, pv_gen = self.pv_av / h, sum(inv.energy_kws for inv in inverters) / h
        load = (self.base + sum(ld.energy_kws for ld in loads)) / h
        imp, exp = self.imp / h, self.exp / h
        charge = sum(b.charge_kwh for b in batteries)
        discharge = sum(b.discharge_kwh for b in batteries)
        socs = [(100.0 * b.e_low / b.cap_kwh, 100.0 * b.e_high / b.cap_kwh) for b in batteries]
        peak = self.peak_import_kw
        shed = sum(ld.shed_kws / h for ld in loads)
        return {
            "hours": self.elapsed_s / h,
            "pv_available_kwh": pv_av,
            "pv_generated_kwh": pv_gen,
            "pv_curtailed_kwh": max(0.0, pv_av - pv_gen),
            "load_kwh": load,
            "grid_import_kwh": imp,
            "grid_export_kwh": exp,
            "battery_charge_kwh": charge,
            "battery_discharge_kwh": discharge,
            "green_utilization": self.green / h / pv_av if pv_av > 0 else 0.0,
            "self_sufficiency": 1.0 - imp / load if load > 0 else 0.0,
            "energy_cost_cny": self.cost / h,
            "demand_charge_cny": peak * scenario.tariff.demand_charge_cny_per_kw_month,
            "peak_import_kw": peak,
            "peak_import_instant_kw": self.peak_inst_kw,
            "co2_kg": imp * scenario.grid.carbon_kg_per_kwh,
            "export_limit_violation_s": self.viol_exp_s,
            "import_limit_violation_s": self.viol_imp_s,
            "soc_min_pct": min((lo for lo, _ in socs), default=0.0),
            "soc_max_pct": max((hi for _, hi in socs), default=0.0),
            "energy_balance_error_kwh": load - pv_gen - discharge + charge - imp + exp,
            "load_shed_kwh": shed,
            "shed_cost_cny": sum(ld.shed_kws / h * ld.cfg.shed_cost_cny_per_kwh for ld in loads),
            "battery_degradation_cny": sum(b.discharge_kwh * b.cfg.degradation_cny_per_kwh for b in batteries),
        }


class Recorder:
    """Rows every ``row_s`` of sim time: interval means of powers from cumulative energies (kW·s).

    ``ts`` is the row's start (site-local ISO); SoC columns are the mean of the values at the row's two
    ends (exact while the power is constant over the row); price and period are those at ``ts``. With a
    physics step that does not divide ``row_s``, a row ends at the first step end at or after its minute.
    """

    def __init__(
        self, scenario: Scenario, tariff: TariffTable, first_end_s: float, columns: Iterable[str],
        initial: dict[str, float], row_s: float = 60.0,
    ) -> None:  # fmt: skip
        self._start_utc = scenario.start.astimezone(UTC)
        self._tz = scenario.site.tz
        self._tariff = tariff
        self._row_s = row_s
        self._columns = list(columns)
        self._t_prev = 0.0
        self._prev = dict(initial)
        self.next_t = first_end_s
        self.rows: list[dict[str, object]] = []

    def record(self, t1: float, energies: dict[str, float], socs: dict[str, float]) -> None:
        """Close the row ending at ``t1`` (seconds since the scenario start)."""
        span = t1 - self._t_prev
        ts = (self._start_utc + timedelta(seconds=self._t_prev)).astimezone(self._tz)
        row: dict[str, object] = {"ts": ts.isoformat()}
        for col in self._columns:
            if col in energies:
                row[col] = round((energies[col] - self._prev.get(col, 0.0)) / span, 3)
            elif col in socs:
                row[col] = round(0.5 * (socs[col] + self._prev.get(col, socs[col])), 3)
            elif col == "price_cny_per_kwh":
                row[col] = self._tariff.price_at(ts)
            elif col == "period":
                row[col] = self._tariff.period_at(ts)
        self.rows.append(row)
        self._prev = {**energies, **socs}
        self._t_prev = t1
        while self.next_t <= t1 + _EPS:
            self.next_t += self._row_s


def seconds_to_next(local_start: datetime, period_s: float) -> float:
    """Seconds to the next wall-clock multiple of ``period_s`` (a whole period when exactly on one)."""
    midnight = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    into = (local_start - midnight).total_seconds() % period_s
    return period_s - into
