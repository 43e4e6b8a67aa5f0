"""From what the controller knows now to what the optimiser solves: :class:`OptimizerInputs`.

Pure functions of the configuration, a forecast and the park's state, so the live controller, the
simulated day and the fast replay all plan from exactly the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import numpy as np

from controller.config import ControllerConfig
from controller.forecast import Forecast
from optimizer.command import tariff_series
from optimizer.inputs import (
    BatteryInput,
    DrEvent,
    InterruptibleInput,
    OptimizerInputs,
    PvInput,
    SolverSettings,
)


@dataclass(frozen=True)
class LoadHistory:
    """What the planner must know of an interruptible load's recent past.

    ``sheds_today`` counts the sheds begun on the site-local date ``day``, as the load itself counts
    them against ``max_sheds_per_day``; a shed running across midnight belongs to the day it began.
    """

    shed_since: datetime | None = None
    last_restore: datetime | None = None
    sheds_today: int = 0
    day: date | None = None

    def on(self, today: date) -> LoadHistory:
        """The history as seen on ``today``: a new day gives the load its sheds back."""
        return self if self.day == today else replace(self, sheds_today=0, day=today)


@dataclass(frozen=True)
class ParkState:
    """The park at the moment a plan is made."""

    ts: datetime
    soc_pct: Mapping[str, float]
    loads: Mapping[str, LoadHistory] = field(default_factory=dict)
    month_peak_kw: float = 0.0


def plan_start(now: datetime, step_s: int) -> datetime:
    """Plans start at the current step boundary, so step 0 is the step the park is in now."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = int((now - midnight).total_seconds() // step_s)
    return midnight + timedelta(seconds=steps * step_s)


def _interruptible(config: ControllerConfig, state: ParkState) -> list[InterruptibleInput]:
    out = []
    for ld in config.loads:
        hist = state.loads.get(ld.id, LoadHistory())
        shed_active = (state.ts - hist.shed_since).total_seconds() if hist.shed_since else 0.0
        since = (state.ts - hist.last_restore).total_seconds() if hist.last_restore else None
        out.append(InterruptibleInput(
            id=ld.id, running_kw=ld.nominal_kw, max_shed_s=ld.max_shed_s, min_shed_s=min(ld.min_shed_s, ld.max_shed_s),
            min_gap_s=ld.min_gap_s,
            max_sheds_per_day=ld.max_sheds_per_day, rebound_factor=ld.rebound_factor, rebound_s=ld.rebound_s,
            shed_cost_cny_per_kwh=ld.shed_cost_cny_per_kwh, shed_active_s=min(shed_active, ld.max_shed_s),
            since_last_shed_s=None if since is None else max(0.0, since), sheds_today=hist.sheds_today,
        ))  # fmt: skip
    return out


def build_inputs(
    config: ControllerConfig,
    forecast: Forecast,
    state: ParkState,
    dr_events: list[DrEvent] | None = None,
    mode: str = "forecast",
) -> OptimizerInputs:
    """The optimiser's inputs for the forecast's horizon, starting from ``state``."""
    planner = config.planner
    if planner is None:
        raise ValueError("planning needs a 'planner' section in the configuration")
    n, start = forecast.steps, forecast.start
    prices, periods = tariff_series(planner.tariff, start, forecast.step_s, n)
    nominal = sum(ld.nominal_kw for ld in config.loads)
    base = np.maximum(forecast.load_kw - nominal, 0.0)
    limits = config.battery_limits()
    batteries = []
    for bid, spec in planner.battery_specs.items():
        lim = limits[bid]
        soc = min(max(state.soc_pct.get(bid, lim.soc_min_pct), lim.soc_min_pct), lim.soc_max_pct)
        batteries.append(BatteryInput(
            id=bid, capacity_kwh=spec.capacity_kwh, p_charge_max_kw=spec.p_charge_max_kw,
            p_discharge_max_kw=spec.p_discharge_max_kw, eta_charge=spec.eta_charge,
            eta_discharge=spec.eta_discharge, soc_min_pct=lim.soc_min_pct, soc_max_pct=lim.soc_max_pct,
            soc_init_pct=soc, soc_terminal_pct=soc, degradation_cny_per_kwh=spec.degradation_cny_per_kwh,
        ))  # fmt: skip
    return OptimizerInputs(
        start=start, step_s=forecast.step_s, n_steps=n, base_load_kw=base.tolist(),
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=[planner.tariff.export_cny_per_kwh] * n,
        import_cap_kw=[config.grid.import_cap_kw] * n, export_cap_kw=[config.grid.export_cap_kw] * n,
        carbon_kg_per_kwh=[planner.carbon_kg_per_kwh] * n, tou_period=periods,
        demand_charge_cny_per_kw=planner.tariff.demand_charge_cny_per_kw_month,
        month_peak_so_far_kw=state.month_peak_kw,
        pv=[PvInput(id=pid, available_kw=np.asarray(a).tolist()) for pid, a in forecast.pv_kw.items()],
        batteries=batteries, interruptible_loads=_interruptible(config, state),
        dr_events=dr_events or [],
        settings=SolverSettings(time_limit_s=planner.time_limit_s, mip_rel_gap=planner.mip_rel_gap,
                                mip_search_s=planner.mip_search_s, green_rel_tol=planner.green_rel_tol),
        mode=mode,  # type: ignore[arg-type]
    )  # fmt: skip
