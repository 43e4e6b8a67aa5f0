"""What the optimizer is solved from: validated, self-contained, serialisable (it is embedded in plan.json).

Every per-step series has exactly ``n_steps`` finite values; step ``t`` covers
``[start + t*step_s, start + (t+1)*step_s)`` and its value is the mean power (kW) or price over that step.
A NaN, an infinity or a missing value is rejected by pydantic with the field and the step index in the error
location (e.g. ``pv.0.available_kw.17``); a series of the wrong length names the field and the count.
Sign convention as in :mod:`parkctl`: grid import +, battery discharge +, loads and PV +.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_HORIZON_S = 48 * 3600
DEFAULT_CARBON_KG_PER_KWH = 0.5366


def _as_list(v: Any) -> Any:
    """Accept numpy arrays and tuples for series; pydantic then checks each value."""
    if isinstance(v, np.ndarray):
        return v.astype(float).tolist()
    if isinstance(v, tuple):
        return list(v)
    return v


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Series = Annotated[list[FiniteFloat], BeforeValidator(_as_list)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PvInput(_Model):
    """A PV plant: the optimizer chooses its output (the limit) between 0 and what is available."""

    id: str
    available_kw: Series


class BatteryInput(_Model):
    """Energy ``e = soc_pct/100 * capacity_kwh``; ``soc_terminal_pct`` is a floor on the last step's SoC."""

    id: str
    capacity_kwh: float = Field(gt=0, allow_inf_nan=False)
    p_charge_max_kw: float = Field(ge=0, allow_inf_nan=False)
    p_discharge_max_kw: float = Field(ge=0, allow_inf_nan=False)
    eta_charge: float = Field(default=0.95, gt=0, le=1)
    eta_discharge: float = Field(default=0.95, gt=0, le=1)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)
    soc_init_pct: float = Field(ge=0, le=100, allow_inf_nan=False)
    soc_terminal_pct: float = Field(default=0.0, ge=0, le=100)
    degradation_cny_per_kwh: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> BatteryInput:
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError("soc_min_pct must be below soc_max_pct")
        return self


class InterruptibleInput(_Model):
    """A load running at ``running_kw`` that may be shed by ``shed_kw`` (on/off, a binary per step).

    Durations are seconds; the model rounds them to steps (see ``optimizer.data``). The state fields
    describe the load at ``start``: shed for ``shed_active_s`` (0 = running), running again for
    ``since_last_shed_s`` since its last shed ended (None = long enough), ``sheds_today`` sheds already
    started on the start's local day, and ``rebound_kw_initial`` the rebound still to come from earlier
    sheds, per step from the start (shorter than the horizon: the rest is 0).
    """

    id: str
    running_kw: float = Field(gt=0, allow_inf_nan=False)
    shed_kw: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="default running_kw")
    max_shed_s: float = Field(gt=0, allow_inf_nan=False)
    min_shed_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    min_gap_s: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="min run between sheds")
    max_sheds_per_day: int = Field(ge=0)
    rebound_factor: float = Field(default=0.0, ge=0, le=2)
    rebound_s: float = Field(default=1800.0, gt=0, allow_inf_nan=False)
    shed_cost_cny_per_kwh: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    shed_active_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    since_last_shed_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    sheds_today: int = Field(default=0, ge=0)
    rebound_kw_initial: Series = Field(default_factory=list)

    @model_validator(mode="after")
    def _shed_kw(self) -> InterruptibleInput:
        if self.min_shed_s > self.max_shed_s:
            raise ValueError("min_shed_s cannot exceed max_shed_s")
        if self.shed_kw is not None and self.shed_kw > self.running_kw:
            raise ValueError("shed_kw cannot exceed running_kw")
        if any(v < 0 for v in self.rebound_kw_initial):
            raise ValueError("rebound_kw_initial values must be >= 0")
        return self

    @property
    def shed_power_kw(self) -> float:
        return self.running_kw if self.shed_kw is None else self.shed_kw


class DeferrableInput(_Model):
    """A load that must take ``energy_kwh`` inside steps ``[window_start, window_end)``.

    Power is 0 or within ``[p_min_kw, p_max_kw]``; once started it runs ``min_run_s`` at least.
    ``running_s_at_start`` > 0 says it is running at ``start`` and has run that long.
    """

    id: str
    energy_kwh: float = Field(ge=0, allow_inf_nan=False)
    p_min_kw: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    p_max_kw: float = Field(gt=0, allow_inf_nan=False)
    min_run_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    window_start: int = Field(ge=0)
    window_end: int = Field(ge=1)
    running_s_at_start: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> DeferrableInput:
        if self.p_min_kw > self.p_max_kw:
            raise ValueError("p_min_kw cannot exceed p_max_kw")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class DrEvent(_Model):
    """Demand response over steps ``[first_step, end_step)``; shortfall costs ``penalty_cny_per_kwh``.

    ``reduction``: mean of (baseline_kw - import) over the window >= committed_kw (Jiangsu-style
    settlement; baseline_kw has one value per window step). ``import_cap``: import <= cap_kw each step.
    """

    id: str
    kind: Literal["reduction", "import_cap"]
    first_step: int = Field(ge=0)
    end_step: int = Field(ge=1)
    penalty_cny_per_kwh: float = Field(ge=0, allow_inf_nan=False)
    committed_kw: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    baseline_kw: Series = Field(default_factory=list)
    cap_kw: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> DrEvent:
        if self.end_step <= self.first_step:
            raise ValueError("end_step must be after first_step")
        n = self.end_step - self.first_step
        if self.kind == "reduction" and len(self.baseline_kw) != n:
            raise ValueError(f"baseline_kw has {len(self.baseline_kw)} values; the window has {n} steps")
        return self


class SolverSettings(_Model):
    """How hard to try, and how strictly green comes first.

    The green tolerance is part of the problem definition: stage 2 may give up
    ``max(green_abs_tol_kwh, green_rel_tol * PV available kWh)`` of green for cost (see ``optimizer.model``).
    """

    time_limit_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    mip_rel_gap: float = Field(default=0.005, ge=0, le=1)
    mip_search_s: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="MIP search seconds once a heuristic incumbent is in hand (None: the time limit; 0: none)",
    )  # fmt: skip
    green_rel_tol: float = Field(default=1e-3, ge=0, le=0.1)
    green_abs_tol_kwh: float = Field(default=0.01, ge=0)
    green_tiebreak_kwh_per_cny: float = Field(
        default=1e-4, gt=0, le=1e-2, description="weight of cost in green-maximising solves (numerics)"
    )
    battery_tiebreak_cny_per_kwh: float = Field(
        default=1e-5, ge=0, le=1e-2, description="cost per kWh charged or discharged: no idle cycling in ties"
    )


class OptimizerInputs(_Model):
    """Everything one solve needs; per-step series are indexed by step from ``start``."""

    start: datetime
    step_s: int = Field(ge=60, le=3600)
    n_steps: int = Field(ge=1)
    base_load_kw: Series
    import_price_cny_per_kwh: Series
    export_price_cny_per_kwh: Series
    import_cap_kw: Series
    export_cap_kw: Series
    carbon_kg_per_kwh: Series = Field(default_factory=list, description="empty: 0.5366 at every step")
    tou_period: list[str] = Field(default_factory=list, description="informative, per step; may be empty")
    demand_charge_cny_per_kw: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    month_peak_so_far_kw: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    pv: list[PvInput] = Field(default_factory=list)
    batteries: list[BatteryInput] = Field(default_factory=list)
    interruptible_loads: list[InterruptibleInput] = Field(default_factory=list)
    deferrable_loads: list[DeferrableInput] = Field(default_factory=list)
    dr_events: list[DrEvent] = Field(default_factory=list)
    settings: SolverSettings = SolverSettings()
    mode: Literal["forecast", "oracle"] = "forecast"

    @model_validator(mode="before")
    @classmethod
    def _default_carbon(cls, data: Any) -> Any:
        if isinstance(data, dict) and not len(data.get("carbon_kg_per_kwh", [])) and "n_steps" in data:
            return {**data, "carbon_kg_per_kwh": [DEFAULT_CARBON_KG_PER_KWH] * int(data["n_steps"])}
        return data

    @model_validator(mode="after")
    def _check(self) -> OptimizerInputs:
        if self.start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")
        n = self.n_steps
        if n * self.step_s > MAX_HORIZON_S:
            raise ValueError(f"horizon {n} x {self.step_s} s exceeds 48 h")
        series = {
            name: getattr(self, name)
            for name in (
                "base_load_kw", "import_price_cny_per_kwh", "export_price_cny_per_kwh",
                "import_cap_kw", "export_cap_kw", "carbon_kg_per_kwh",
            )
        }  # fmt: skip
        series.update({f"pv.{i}.available_kw": p.available_kw for i, p in enumerate(self.pv)})
        for name, values in series.items():
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} values; expected n_steps={n}")
            if min(values) < 0:
                i = int(np.argmin(values))
                raise ValueError(f"{name}[{i}] = {values[i]} is negative")
        if self.tou_period and len(self.tou_period) != n:
            raise ValueError(f"tou_period has {len(self.tou_period)} values; expected n_steps={n}")
        for i, d in enumerate(self.deferrable_loads):
            if d.window_end > n:
                raise ValueError(f"deferrable_loads.{i}.window_end {d.window_end} is beyond n_steps={n}")
        for i, e in enumerate(self.dr_events):
            if e.end_step > n:
                raise ValueError(f"dr_events.{i}.end_step {e.end_step} is beyond n_steps={n}")
        ids = [d.id for group in (self.pv, self.batteries, self.interruptible_loads, self.deferrable_loads)
               for d in group]  # fmt: skip
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"device ids must be unique, repeated: {doubled}")
        return self

    @property
    def dt_h(self) -> float:
        return self.step_s / 3600.0
