"""Optimizer inputs from a Scenario plus forecasts; the entry points the CLI wires (``parkctl optimize``).

Mapping from :mod:`sim.scenario`: an interruptible load sheds all of ``p_kw``; once shed it stays off
``min_off_s`` (``min_shed_s``) and must then run ``min_on_s`` (``min_gap_s``) before the next shed; the
tariff gives per-step prices (the time-weighted mean over each step, minute by minute, so a step that
straddles a period boundary is priced fairly), the export price and the demand charge; grid caps and
carbon intensity are constant per step. Batteries end the horizon at least at their initial SoC unless
``soc_terminal_pct`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from optimizer.inputs import (
    BatteryInput,
    DeferrableInput,
    DrEvent,
    InterruptibleInput,
    OptimizerInputs,
    PvInput,
    SolverSettings,
)
from optimizer.persistent import RollingOptimizer, optimize
from optimizer.plan import Plan, write_plan
from parkctl.tariff import Tariff
from sim.scenario import Scenario

__all__ = ["inputs_from_scenario", "optimize_scenario", "tariff_series", "write_plan"]


def tariff_series(tariff: Tariff, start: datetime, step_s: int, n_steps: int) -> tuple[list[float], list[str]]:
    """Per-step import price (minute-weighted mean over the step) and the period at each step's start.

    Each season's day is laid out once as a 1440-minute price table (``Tariff.price_at`` per minute took
    a quarter of a second per 24-h plan, as long as the re-plan's solve)."""
    prices, periods = [], []
    minutes = max(1, step_s // 60)
    tables: dict[int, np.ndarray] = {}

    def table(t: datetime) -> np.ndarray:
        season = tariff.season_for(t)
        got = tables.get(id(season))
        if got is None:
            got = np.empty(1440)
            for w in season.windows:
                got[w.start_min : w.end_min] = tariff.flat_cny_per_kwh * tariff.ratios[w.kind]
            tables[id(season)] = got
        return got

    for t in range(n_steps):
        t0 = start + timedelta(seconds=t * step_s)
        m0, last = t0.hour * 60 + t0.minute, t0 + timedelta(minutes=minutes - 1)
        if last.date() == t0.date() and last.utcoffset() == t0.utcoffset():  # one local day: one slice
            prices.append(float(table(t0)[m0 : m0 + minutes].mean()))
        else:
            at = [t0 + timedelta(minutes=k) for k in range(minutes)]
            prices.append(float(np.mean([table(a)[a.hour * 60 + a.minute] for a in at])))
        periods.append(str(tariff.period_at(t0)))
    return prices, periods


def _series(values: object) -> list[float]:
    """A forecast as floats; None becomes NaN so that validation names the step."""
    return [float("nan") if v is None else float(v) for v in np.asarray(values, dtype=object).ravel()]


def inputs_from_scenario(
    scenario: Scenario, pv_kw: Mapping[str, np.ndarray], base_load_kw: np.ndarray, step_s: int, start: datetime,
    *, deferrable_loads: Sequence[DeferrableInput] = (), dr_events: Sequence[DrEvent] = (),
    month_peak_so_far_kw: float = 0.0, soc_init_pct: Mapping[str, float] | None = None,
    soc_terminal_pct: Mapping[str, float] | None = None, settings: SolverSettings | None = None,
    oracle: bool = False,
) -> OptimizerInputs:  # fmt: skip
    """Validated inputs; a PV plant without a forecast, or NaN in any forecast, raises with its name/step."""
    if start.tzinfo is None:
        raise ValueError("start must carry a UTC offset")
    local = start.astimezone(scenario.site.tz)
    n = len(base_load_kw)
    missing = [p.id for p in scenario.pv if p.id not in pv_kw]
    if missing:
        raise ValueError(f"pv_kw has no forecast for plant(s) {missing}")
    prices, periods = tariff_series(scenario.tariff, local, step_s, n)
    soc0 = dict(soc_init_pct or {})
    soc_end = dict(soc_terminal_pct or {})
    batteries = [
        BatteryInput(
            id=b.id, capacity_kwh=b.capacity_kwh, p_charge_max_kw=b.p_charge_max_kw,
            p_discharge_max_kw=b.p_discharge_max_kw, eta_charge=b.eta_charge, eta_discharge=b.eta_discharge,
            soc_min_pct=b.soc_min_pct, soc_max_pct=b.soc_max_pct, soc_init_pct=soc0.get(b.id, b.soc_init_pct),
            soc_terminal_pct=soc_end.get(b.id, soc0.get(b.id, b.soc_init_pct)),
            degradation_cny_per_kwh=b.degradation_cny_per_kwh,
        )
        for b in scenario.batteries
    ]  # fmt: skip
    loads = [
        InterruptibleInput(
            id=ld.id, running_kw=ld.p_kw, max_shed_s=ld.max_shed_s, min_shed_s=min(ld.min_off_s, ld.max_shed_s),
            min_gap_s=ld.min_on_s, max_sheds_per_day=ld.max_sheds_per_day, rebound_factor=ld.rebound_factor,
            rebound_s=ld.rebound_s, shed_cost_cny_per_kwh=ld.shed_cost_cny_per_kwh,
        )
        for ld in scenario.interruptible_loads
    ]  # fmt: skip
    g = scenario.grid
    return OptimizerInputs(
        start=local, step_s=step_s, n_steps=n, base_load_kw=_series(base_load_kw), import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=[scenario.tariff.export_cny_per_kwh] * n, import_cap_kw=[g.import_cap_kw] * n,
        export_cap_kw=[g.export_cap_kw] * n, carbon_kg_per_kwh=[g.carbon_kg_per_kwh] * n, tou_period=periods,
        demand_charge_cny_per_kw=scenario.tariff.demand_charge_cny_per_kw_month,
        month_peak_so_far_kw=month_peak_so_far_kw,
        pv=[PvInput(id=p.id, available_kw=_series(pv_kw[p.id])) for p in scenario.pv], batteries=batteries,
        interruptible_loads=loads, deferrable_loads=list(deferrable_loads), dr_events=list(dr_events),
        settings=settings or SolverSettings(), mode="oracle" if oracle else "forecast",
    )  # fmt: skip


def optimize_scenario(
    scenario: Scenario, pv_kw: Mapping[str, np.ndarray], base_load_kw: np.ndarray, step_s: int, start: datetime,
    *, optimizer: RollingOptimizer | None = None, **kwargs: object,
) -> Plan:  # fmt: skip
    """Build inputs (see :func:`inputs_from_scenario` for the keyword options) and solve them.

    Pass the same ``optimizer`` on every call of a rolling horizon to re-solve in place.
    """
    inputs = inputs_from_scenario(scenario, pv_kw, base_load_kw, step_s, start, **kwargs)  # type: ignore[arg-type]
    return optimizer.solve(inputs) if optimizer is not None else optimize(inputs)
