"""The perfect-foresight bound: the smallest bill any controller could run the park for over the realised days.

A strategy is judged by what its savings capture of the best possible ones, so the best must really be
best: no controller may beat it, whatever it does. Running the planner on a perfect forecast through
the real-time layer does not give that (its plan's model differs from the physics, and the execution
adds noise), so the bound is instead one linear programme over the whole replay, built from the park's
own realised profiles, whose every constraint is a *relaxation* of the physics in :mod:`sim`. Any run
that keeps the grid limits, averaged over the bound's blocks, is feasible here and costs at least as
much, so the optimum is a lower bound on that run's bill:

- **Blocks.** Block means of a run satisfy the block-averaged balance, power limits and battery
  dynamics (linear, coefficients constant in time). Imports are priced at the lowest price inside the
  block, so a price change inside a block cannot make the bound dearer than a run.
- **Grid.** Mean import and export stay within cap + violation tolerance (no instant exceeds it, so no
  mean does). The demand charge applies to the largest clock-aligned 15-minute mean import, exactly as
  :mod:`sim.kpi` measures it; blocks divide 15 minutes.
- **PV** at most its available power (ramps and limits only take away). **Batteries** keep the
  physical SoC band and power ratings with the park's efficiencies (derating and ramps only take away);
  wear is charged on discharge as in :mod:`sim.kpi`.
- **Interruptible loads** may be shed by any fraction of a block (an on/off load's block mean), paying
  the shed cost. Rebound: a restore brings back ``rebound_factor`` x the energy not drawn over
  ``rebound_s``, decaying linearly, and a new shed forfeits what is left. A new shed is refused for
  ``min_on_s`` after a restore, so at least ``1 - (1 - min_on_s/rebound_s)^2`` of it is drawn. The bound
  asks for only that share, anywhere from the shed's block to ``max_shed_s + min_on_s`` later (what
  follows the end of the replay is not counted). Shed time per local day is at most
  ``(max_sheds_per_day + 1) x max_shed_s`` (a shed begun the day before may run into it), and over the
  replay ``max_sheds_per_day x max_shed_s`` per day it touches.
- **Nothing is required at the end** (no terminal charge): a run may end the replay empty, so may the bound.

The bill charges the demand charge (per kW-month) on the replay's highest quarter-hour, for the replay's
share of the month (:func:`month_share`): a week is billed the week's part of the monthly charge, as if
the month went on like it. The whole month's charge on a week would price the peak as if the week's
energy savings were all the month had.

What the bound leaves out (min on/off times, ramps, derating, within-block variation, cycle timing and
forecast error) can only make real runs dearer, which is what the gap between a strategy and the bound
measures.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pyomo.environ as pyo
from pyomo.contrib.solver.solvers.highs import Highs as PyomoHighs

from sim import weather
from sim.kpi import DEMAND_WINDOW_S, TariffTable, seconds_to_next
from sim.scenario import InterruptibleLoad, Scenario

Array = npt.NDArray[np.float64]
DAY_S = 86400.0


@dataclass(frozen=True)
class Realised:
    """Block means of what the park's profiles really were over the replay (kW; CNY/kWh)."""

    block_s: float
    starts_s: Array  # block start, seconds since the scenario start
    day: npt.NDArray[np.int64]  # local-date index of each block (0 = the start's date)
    pv_kw: dict[str, Array]
    base_kw: Array
    nominal_kw: dict[str, Array]  # what each interruptible load draws while running
    price_min: Array  # lowest import price inside the block

    @property
    def n(self) -> int:
        return len(self.starts_s)


def realised(scenario: Scenario, hours: float, block_s: float = 900.0) -> Realised:
    """Sample the park's profiles at its physics step, exactly as :class:`sim.park.Park` does, and average."""
    if seconds_to_next(scenario.local_start, DEMAND_WINDOW_S) != DEMAND_WINDOW_S:
        raise ValueError("the bound needs a scenario that starts on a quarter hour (the demand-charge windows)")
    if DEMAND_WINDOW_S % block_s or block_s % scenario.physics_step_s:
        raise ValueError(f"block_s {block_s} must divide {DEMAND_WINDOW_S:.0f} s and be a multiple of the physics step")
    dt = float(scenario.physics_step_s)
    per_day = max(1, round(DAY_S / dt))
    total = round(hours * 3600.0 / dt)
    per_block = round(block_s / dt)
    if total % per_block:
        raise ValueError(f"the replay ({hours} h) is not a whole number of {block_s:.0f}-s blocks")
    tariff = TariffTable(scenario)
    chunks: dict[str, list[Array]] = {}
    for d0 in range(0, total, per_day):  # the park's own day blocks, so the samples are the same numbers
        t_rel = (d0 + np.arange(min(per_day, total - d0))) * dt
        prof = weather.sample(scenario, t_rel, dt)
        series = {"base": prof.base_load_kw, "price": tariff.prices(prof.times)}
        series |= {f"pv/{k}": v for k, v in prof.pv_kw.items()}
        series |= {f"load/{k}": v for k, v in prof.interruptible_kw.items()}
        for key, v in series.items():
            chunks.setdefault(key, []).append(np.asarray(v, dtype=float))
    blocks = {k: np.concatenate(v).reshape(-1, per_block) for k, v in chunks.items()}
    starts = np.asarray(np.arange(total // per_block) * block_s, dtype=np.float64)
    local0 = scenario.local_start
    midnight0 = local0.replace(hour=0, minute=0, second=0, microsecond=0)
    day = np.array([((local0 + timedelta(seconds=float(s))) - midnight0).days for s in starts], dtype=np.int64)
    return Realised(
        block_s=block_s, starts_s=starts, day=day,
        pv_kw={p.id: blocks[f"pv/{p.id}"].mean(axis=1) for p in scenario.pv},
        base_kw=blocks["base"].mean(axis=1),
        nominal_kw={ld.id: blocks[f"load/{ld.id}"].mean(axis=1) for ld in scenario.interruptible_loads},
        price_min=blocks["price"].min(axis=1),
    )  # fmt: skip


def delivered_share(load: InterruptibleLoad) -> float:
    """The least share of a shed's rebound that is drawn before a new shed can forfeit the rest."""
    a = min(load.min_on_s, load.rebound_s) / load.rebound_s
    return 1.0 - (1.0 - a) ** 2


def build(scenario: Scenario, r: Realised, keep_limits: bool = True) -> pyo.ConcreteModel:
    """The relaxation as a Pyomo model; its objective is the bill in CNY (energy, shed, wear, demand).

    With ``keep_limits`` the bound holds for runs that keep the grid limits (what strategies are judged
    on); without, for any run at all.
    """
    m = pyo.ConcreteModel(name="perfect-foresight bound")
    T = range(r.n)
    h = r.block_s / 3600.0
    g, tariff = scenario.grid, scenario.tariff
    loads = {ld.id: ld for ld in scenario.interruptible_loads}
    bats = {b.id: b for b in scenario.batteries}
    m.imp = pyo.Var(T, bounds=(0.0, g.import_cap_kw + g.violation_tolerance_kw if keep_limits else None))
    m.exp = pyo.Var(T, bounds=(0.0, g.export_cap_kw + g.violation_tolerance_kw if keep_limits else None))
    m.pv = pyo.Var(list(r.pv_kw), T, bounds=lambda _, p, t: (0.0, float(r.pv_kw[p][t])))
    m.ch = pyo.Var(list(bats), T, bounds=lambda _, b, t: (0.0, bats[b].p_charge_max_kw))
    m.dis = pyo.Var(list(bats), T, bounds=lambda _, b, t: (0.0, bats[b].p_discharge_max_kw))
    lo = {b: x.capacity_kwh * min(x.soc_min_pct, x.soc_init_pct) / 100.0 for b, x in bats.items()}
    hi = {b: x.capacity_kwh * max(x.soc_max_pct, x.soc_init_pct) / 100.0 for b, x in bats.items()}
    m.soe = pyo.Var(list(bats), T, bounds=lambda _, b, t: (lo[b], hi[b]))
    m.shed = pyo.Var(list(loads), T, bounds=(0.0, 1.0))  # share of the block the load is off
    window = {lid: math.ceil((ld.max_shed_s + min(ld.min_on_s, ld.rebound_s)) / r.block_s) for lid, ld in loads.items()}
    rb_index = [(lid, t, k) for lid in loads for t in T for k in range(window[lid] + 1)]
    m.rb = pyo.Var(rb_index, within=pyo.NonNegativeReals)  # rebound of block t's shed drawn in block t + k
    m.peak = pyo.Var(within=pyo.NonNegativeReals)

    def shed_kw(lid: str, t: int) -> pyo.Expression:
        return float(r.nominal_kw[lid][t]) * m.shed[lid, t]

    def rebound_kw(u: int) -> pyo.Expression:
        return sum(m.rb[lid, u - k, k] for lid in loads for k in range(window[lid] + 1) if u - k >= 0)

    m.balance = pyo.Constraint(T, rule=lambda _, t: (
        m.imp[t] - m.exp[t] + sum(m.pv[p, t] for p in r.pv_kw) + sum(m.dis[b, t] - m.ch[b, t] for b in bats)
        == float(r.base_kw[t]) + sum(float(r.nominal_kw[lid][t]) for lid in loads)
        - sum(shed_kw(lid, t) for lid in loads) + rebound_kw(t)
    ))  # fmt: skip
    m.soe_dyn = pyo.Constraint(list(bats), T, rule=lambda _, b, t: m.soe[b, t] == (
        (m.soe[b, t - 1] if t else bats[b].capacity_kwh * bats[b].soc_init_pct / 100.0)
        + h * (bats[b].eta_charge * m.ch[b, t] - m.dis[b, t] / bats[b].eta_discharge)
    ))  # fmt: skip
    m.rebound = pyo.Constraint(list(loads), T, rule=lambda _, lid, t: (
        sum(m.rb[lid, t, k] for k in range(window[lid] + 1))
        >= loads[lid].rebound_factor * delivered_share(loads[lid]) * shed_kw(lid, t)
    ))  # fmt: skip
    days = sorted(set(r.day.tolist()))
    per_window = round(DEMAND_WINDOW_S / r.block_s)
    m.peak_def = pyo.Constraint(range(r.n // per_window), rule=lambda _, w: m.peak >= sum(
        m.imp[t] for t in range(w * per_window, (w + 1) * per_window)) / per_window)  # fmt: skip
    m.shed_day = pyo.Constraint(list(loads), days, rule=lambda _, lid, k: sum(
        m.shed[lid, t] for t in T if r.day[t] == k) * r.block_s
        <= (loads[lid].max_sheds_per_day + 1) * loads[lid].max_shed_s)  # fmt: skip
    m.shed_all = pyo.Constraint(list(loads), rule=lambda _, lid: sum(m.shed[lid, t] for t in T) * r.block_s
                                <= len(days) * loads[lid].max_sheds_per_day * loads[lid].max_shed_s)  # fmt: skip
    energy = sum(h * (float(r.price_min[t]) * m.imp[t] - tariff.export_cny_per_kwh * m.exp[t]) for t in T)
    shed = sum(h * loads[lid].shed_cost_cny_per_kwh * shed_kw(lid, t) for lid in loads for t in T)
    wear = sum(h * bats[b].degradation_cny_per_kwh * m.dis[b, t] for b in bats for t in T)
    demand_rate = tariff.demand_charge_cny_per_kw_month * month_share(scenario, r.n * r.block_s / 3600.0)
    m.bill = pyo.Objective(expr=energy + shed + wear + demand_rate * m.peak)
    return m


def solve(m: pyo.ConcreteModel) -> float:
    """Solve to optimality (an LP); the bill in CNY."""
    res = PyomoHighs().solve(m, raise_exception_on_nonoptimal_result=False, load_solutions=False)
    if str(res.termination_condition.name) != "convergenceCriteriaSatisfied":
        raise RuntimeError(f"the bound did not solve: {res.termination_condition.name}")
    res.solution_loader.load_vars()
    return float(pyo.value(m.bill))


def month_share(scenario: Scenario, hours: float) -> float:
    """The part of the start's month that ``hours`` are: what share of a monthly charge they carry."""
    start = scenario.local_start
    return hours / 24.0 / calendar.monthrange(start.year, start.month)[1]


def bill(k: dict[str, float], share: float) -> float:
    """What a run costs the park: energy, shed, wear and ``share`` of the monthly demand charge."""
    return k["energy_cost_cny"] + k["shed_cost_cny"] + k["battery_degradation_cny"] + share * k["demand_charge_cny"]


def bound_bill(scenario: Scenario, hours: float, block_s: float = 900.0, keep_limits: bool = True) -> float:
    """The least bill any run of ``hours`` from the scenario start can have (see the module docstring)."""
    return solve(build(scenario, realised(scenario, hours, block_s), keep_limits))
