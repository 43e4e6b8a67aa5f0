"""The Plan: setpoints per step, the objective broken down, how it was obtained, and its own inputs.

A plan is self-contained: ``plan.inputs`` is exactly what was solved, so ``Plan.model_validate_json``
followed by a re-solve of ``plan.inputs`` reproduces the problem. The breakdown is evaluated on the
post-processed flows (see :mod:`optimizer.flows`) with the formulas of :mod:`optimizer.model`.
"""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from optimizer.data import ModelData, rebound_kw
from optimizer.flows import Flows, green_kwh, load_kw
from optimizer.inputs import OptimizerInputs

Status = Literal["optimal", "time_limit", "infeasible", "no_solution", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Objective(_Model):
    green_kwh: float
    cost_cny: float
    energy_cny: float
    demand_cny: float
    degradation_cny: float
    shed_cny: float
    rebound_after_horizon_cny: float
    dr_penalty_cny: float
    pv_available_kwh: float
    pv_used_kwh: float
    curtailed_kwh: float
    import_kwh: float
    export_kwh: float
    load_kwh: float
    shed_kwh: float
    peak_import_kw: float
    co2_kg: float


class Timings(_Model):
    build_s: float
    load_s: float
    solve_s: float
    total_s: float
    rebuilt: bool


class BatteryPlan(_Model):
    id: str
    p_kw: list[float]  # + discharge / - charge
    soc_pct: list[float]  # at the end of each step


class PvPlan(_Model):
    id: str
    limit_kw: list[float]  # planned output; the limit to send when below what is available


class LoadPlan(_Model):
    id: str
    kind: Literal["interruptible", "deferrable"]
    on: list[bool]  # interruptible: running (not shed); deferrable: drawing power
    p_kw: list[float]


class Plan(_Model):
    status: Status
    fallback: bool
    message: str
    diagnosis: dict[str, list[str]]
    mip_gap: float | None
    green_gap: float | None
    green_floor_kwh: float | None
    objective: Objective
    timings: Timings
    grid_import_kw: list[float]
    grid_export_kw: list[float]
    load_kw: list[float]
    batteries: list[BatteryPlan]
    pv: list[PvPlan]
    loads: list[LoadPlan]
    inputs: OptimizerInputs


def evaluate(d: ModelData, f: Flows) -> Objective:
    """The objective terms of the flows ``f`` (model formulas, on the post-processed values)."""
    S, dt = d.structure, d.dt
    green = green_kwh(d, f)
    energy = dt * float(d.price_imp @ f.imp - d.price_exp @ f.exp)
    peak = float(max(f.imp.max(initial=0.0), d.peak_lb))
    demand = d.demand_rate * (peak - d.peak_lb)
    degradation = dt * float((d.deg[:, None] * f.dis).sum() + d.cycle_tb * (f.ch.sum() + f.dis.sum()))
    shed_kw = np.array([r.shed_kw for r in S.sheds]).reshape(-1, 1)
    shed = dt * float((d.shed_cost[:, None] * shed_kw * f.shed).sum())
    owed = [rebound_kw(r, f.shed[i], float(d.run0[i]), dt)[1] for i, r in enumerate(S.sheds)]
    rebound = float(d.price_imp[-1] * sum(owed)) if owed else 0.0
    red = np.maximum(dt * (d.red_mask @ f.imp) - d.red_rhs, 0.0)
    capx = np.maximum(f.imp - d.cap_kw, 0.0)
    dr = float(d.red_penalty @ red) + dt * float(d.cap_penalty @ capx)
    load = load_kw(d, f.shed, f.dl)
    return Objective(
        green_kwh=green, cost_cny=energy + demand + degradation + shed + rebound + dr, energy_cny=energy,
        demand_cny=demand, degradation_cny=degradation, shed_cny=shed, rebound_after_horizon_cny=rebound,
        dr_penalty_cny=dr, pv_available_kwh=dt * float(d.pv_ub.sum()), pv_used_kwh=dt * float(f.pv.sum()),
        curtailed_kwh=dt * float((d.pv_ub - f.pv).sum()), import_kwh=dt * float(f.imp.sum()),
        export_kwh=dt * float(f.exp.sum()), load_kwh=dt * float(load.sum()),
        shed_kwh=dt * float((shed_kw * f.shed).sum()), peak_import_kw=peak,
        co2_kg=dt * float(d.carbon @ f.imp),
    )  # fmt: skip


def make_plan(
    inputs: OptimizerInputs, d: ModelData, f: Flows, *, status: Status, fallback: bool, message: str,
    timings: Timings, diagnosis: dict[str, list[str]] | None = None, mip_gap: float | None = None,
    green_gap: float | None = None, green_floor_kwh: float | None = None,
) -> Plan:  # fmt: skip
    """Assemble a plan from cleaned flows."""
    load = load_kw(d, f.shed, f.dl)
    loads = []
    for i, ld in enumerate(inputs.interruptible_loads):
        p = load_kw_single(d, i, f.shed[i])
        loads.append(LoadPlan(id=ld.id, kind="interruptible", on=(f.shed[i] < 0.5).tolist(), p_kw=p.tolist()))
    for i, dl in enumerate(inputs.deferrable_loads):
        loads.append(LoadPlan(id=dl.id, kind="deferrable", on=f.dl_on[i].tolist(), p_kw=f.dl[i].tolist()))
    batteries = [
        BatteryPlan(id=b.id, p_kw=(f.dis[k] - f.ch[k]).tolist(), soc_pct=(100.0 * f.soe[k] / b.capacity_kwh).tolist())
        for k, b in enumerate(inputs.batteries)
    ]  # fmt: skip
    return Plan(
        status=status, fallback=fallback, message=message, diagnosis=diagnosis or {},
        mip_gap=_finite(mip_gap), green_gap=_finite(green_gap), green_floor_kwh=_finite(green_floor_kwh),
        objective=evaluate(d, f), timings=timings, grid_import_kw=f.imp.tolist(), grid_export_kw=f.exp.tolist(),
        load_kw=load.tolist(), batteries=batteries,
        pv=[PvPlan(id=p.id, limit_kw=f.pv[k].tolist()) for k, p in enumerate(inputs.pv)], loads=loads,
        inputs=inputs,
    )  # fmt: skip


def load_kw_single(d: ModelData, i: int, shed: np.ndarray) -> np.ndarray:
    """Draw of interruptible load ``i``: running - shed + rebound (initial rebound included)."""
    r = d.structure.sheds[i]
    p = d.il_running[i] - r.shed_kw * shed + d.il_rebound0[i] + rebound_kw(r, shed, float(d.run0[i]), d.dt)[0]
    return np.asarray(p, dtype=float)


def _finite(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def read_plan(path: str | Path) -> Plan:
    return Plan.model_validate_json(Path(path).read_text(encoding="utf-8"))


def write_plan(plan: Plan, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``plan.json`` (everything, inputs included) and ``plan.csv`` (one row per step)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pj, pc = out / "plan.json", out / "plan.csv"
    pj.write_text(json.dumps(plan.model_dump(mode="json"), indent=1), encoding="utf-8")
    inp = plan.inputs
    head = ["step", "start", "period", "import_price_cny_per_kwh", "export_price_cny_per_kwh", "base_load_kw",
            "load_kw", "grid_import_kw", "grid_export_kw"]  # fmt: skip
    for b in plan.batteries:
        head += [f"{b.id}.p_kw", f"{b.id}.soc_pct"]
    for p in plan.pv:
        head += [f"{p.id}.available_kw", f"{p.id}.limit_kw"]
    for ld in plan.loads:
        head += [f"{ld.id}.on", f"{ld.id}.p_kw"]
    with pc.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for t in range(inp.n_steps):
            ts = inp.start + timedelta(seconds=t * inp.step_s)
            row: list[object] = [t, ts.isoformat(), inp.tou_period[t] if inp.tou_period else "",
                                 inp.import_price_cny_per_kwh[t], inp.export_price_cny_per_kwh[t],
                                 inp.base_load_kw[t], plan.load_kw[t], plan.grid_import_kw[t],
                                 plan.grid_export_kw[t]]  # fmt: skip
            for b in plan.batteries:
                row += [round(b.p_kw[t], 3), round(b.soc_pct[t], 3)]
            for k, p in enumerate(plan.pv):
                row += [inp.pv[k].available_kw[t], round(p.limit_kw[t], 3)]
            for ld in plan.loads:
                row += [int(ld.on[t]), round(ld.p_kw[t], 3)]
            w.writerow(row)
    return pj, pc
