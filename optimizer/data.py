"""The numbers of the model, derived from :class:`OptimizerInputs` with numpy only.

Two parts: :class:`Structure` decides the shape of the matrix (sizes, efficiencies, device physics
rounded to steps); everything else (bounds, right-hand sides, costs, window memberships) is data that a
persistent HiGHS instance can take in place. Equal structures mean a built model can be re-solved.

Rounding of durations to steps (``s`` = step_s): max shed ``D = floor(max_shed_s/s)``; min shed
``U = ceil(min_shed_s/s)``; min gap between sheds ``Gp = ceil(min_gap_s/s)``; rebound spread
``R = max(1, round(rebound_s/s))``; deferrable min run ``L = ceil(min_run_s/s)``.

Rebound (see :func:`rebound_kw`): a shed of ``n`` steps restored at step ``e`` draws ``rebound_factor *
shed_kw * n * dt`` kWh over the R steps from ``e`` on, the share ``(2(R-j)-1)/R^2`` in step ``e+j``: a linear
decay from twice the mean at the restore, as the park's loads draw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from optimizer.inputs import OptimizerInputs

BIG = 1e20  # HiGHS reads |bounds| >= 1e20 as infinite


def _steps_floor(seconds: float, step_s: int) -> int:
    return math.floor(seconds / step_s + 1e-9)


def _steps_ceil(seconds: float, step_s: int) -> int:
    return max(0, math.ceil(seconds / step_s - 1e-9))


@dataclass(frozen=True)
class ShedRule:
    """Interruptible-load physics in steps: the matrix depends on these."""

    shed_kw: float
    rebound_kwh: float  # rebound one shed step brings back after the restore (rebound_factor * shed_kw * dt)
    rebound_steps: int
    max_steps: int  # D
    min_steps: int  # U, used as max(U, 1)
    gap_steps: int  # Gp, used as max(Gp, 1)


@dataclass(frozen=True)
class DeferRule:
    binary: bool
    p_min_kw: float
    p_max_kw: float
    min_run_steps: int  # L


@dataclass(frozen=True)
class Structure:
    n_steps: int
    step_s: int
    n_pv: int
    batteries: tuple[tuple[float, float], ...]  # (eta_charge, eta_discharge)
    sheds: tuple[ShedRule, ...]
    n_days: int  # local-day slots (rows of the sheds-per-day rule); trailing ones may be empty
    defers: tuple[DeferRule, ...]
    n_reduction_events: int
    has_cap_events: bool


@dataclass
class ModelData:
    """Arrays indexed ``[device, step]`` (flattened row-major in the model)."""

    structure: Structure
    dt: float
    rhs_balance: np.ndarray  # base load + interruptible running power + initial rebound
    imp_ub: np.ndarray
    exp_ub: np.ndarray
    price_imp: np.ndarray
    price_exp: np.ndarray
    carbon: np.ndarray
    pv_ub: np.ndarray  # (P, T)
    e0: np.ndarray  # (B,) kWh
    e_lo: np.ndarray
    e_hi: np.ndarray
    e_term: np.ndarray
    pch: np.ndarray
    pdis: np.ndarray
    deg: np.ndarray
    cycle_tb: float  # CNY per kWh charged or discharged (settings.battery_tiebreak_cny_per_kwh)
    shed_init: np.ndarray  # (L,) 1 if shed at start
    shed_lb: np.ndarray  # (L, T)
    shed_ub: np.ndarray
    maxdur_rhs: np.ndarray  # (L, T) 1 while the shed in progress at the start may go on
    day_of_step: np.ndarray  # (T,) local calendar day index from the start's day
    day_rhs: np.ndarray  # (L, K)
    shed_cost: np.ndarray  # (L,) CNY/kWh
    dl_ub: np.ndarray  # (D, T) kW, 0 outside the window
    dl_energy: np.ndarray  # (D,)
    on_lb: np.ndarray  # (D, T) used for binary loads only
    on_ub: np.ndarray
    start_ub: np.ndarray  # (D, T) 1 where a run may start and still fit min_run inside the window
    on_init: np.ndarray  # (D,)
    red_mask: np.ndarray  # (E, T) bool
    red_rhs: np.ndarray  # (E,) kWh
    red_penalty: np.ndarray  # (E,)
    cap_kw: np.ndarray  # (T,) BIG outside cap events
    cap_short_ub: np.ndarray  # (T,)
    cap_penalty: np.ndarray  # (T,)
    il_running: np.ndarray  # (L,) kW drawn while running
    il_rebound0: np.ndarray  # (L, T) rebound from sheds before the start
    run0: np.ndarray  # (L,) steps a load shed at the start has been shed already (shed_active_s / step_s)
    demand_rate: float
    peak_lb: float
    loss_ch: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) 1 - eta_c*eta_d

    @property
    def n_steps(self) -> int:
        return self.structure.n_steps


def run_cap(r: ShedRule) -> float:
    """The longest run of shed steps (the big-M of the rebound rows): the maximum shed and a step in progress."""
    return float(max(r.max_steps, 1) + 1)


def rebound_shares(r: ShedRule) -> np.ndarray:
    """Share of a restore's rebound in each of the R steps from the restore on (a linear decay, sums to 1)."""
    R = r.rebound_steps
    return np.array([(2 * (R - j) - 1) / R**2 for j in range(R)])


def rebound_kw(r: ShedRule, shed: np.ndarray, run0: float, dt: float) -> tuple[np.ndarray, float]:
    """(rebound drawn in each step in kW, kWh that falls after the last step) of a 0/1 shed schedule."""
    T = len(shed)
    out = np.zeros(T)
    after = 0.0
    shares = rebound_shares(r)
    run = run0
    for t, s in enumerate(np.asarray(shed) > 0.5):
        if s:
            run += 1.0
            continue
        if run > 0:  # a restore: the whole run comes back from here on
            kwh = r.rebound_kwh * run
            for j, share in enumerate(shares):
                if t + j < T:
                    out[t + j] += share * kwh / dt
                else:
                    after += share * kwh
        run = 0.0
    if run > 0:  # still shed at the end: all of it comes back later
        after += r.rebound_kwh * run
    return out, after


def _day_index(inp: OptimizerInputs) -> np.ndarray:
    tz = inp.start.tzinfo
    first = inp.start.astimezone(tz).date()
    return np.array(
        [((inp.start + timedelta(seconds=t * inp.step_s)).astimezone(tz).date() - first).days
         for t in range(inp.n_steps)],
        dtype=np.int64,
    )  # fmt: skip


def _shed_arrays(inp: OptimizerInputs, rules: list[ShedRule], n_days: int) -> dict[str, np.ndarray]:
    T, s = inp.n_steps, inp.step_s
    L = len(rules)
    lb, ub = np.zeros((L, T)), np.ones((L, T))
    init = np.zeros(L)
    maxdur = np.zeros((L, T))
    day_rhs = np.zeros((L, n_days))
    for i, (ld, r) in enumerate(zip(inp.interruptible_loads, rules, strict=True)):
        if ld.shed_active_s > 0:
            init[i] = 1.0
            allowed = _steps_floor(max(0.0, ld.max_shed_s - ld.shed_active_s), s)  # more steps it may stay
            maxdur[i, :allowed] = 1.0  # the shed in progress counts as a start inside the window
            lb[i, : min(_steps_ceil(ld.min_shed_s - ld.shed_active_s, s), allowed)] = 1.0
        elif ld.since_last_shed_s is not None:
            ub[i, : _steps_ceil(ld.min_gap_s - ld.since_last_shed_s, s)] = 0.0
        if r.max_steps < 1:
            lb[i, :], ub[i, :] = 0.0, 0.0
        day_rhs[i, :] = ld.max_sheds_per_day
        day_rhs[i, 0] = max(0, ld.max_sheds_per_day - ld.sheds_today)
    return {"shed_lb": lb, "shed_ub": ub, "shed_init": init, "maxdur_rhs": maxdur, "day_rhs": day_rhs}


def _defer_arrays(inp: OptimizerInputs, rules: list[DeferRule]) -> dict[str, np.ndarray]:
    T, s = inp.n_steps, inp.step_s
    D = len(rules)
    dl_ub, on_lb, on_ub, start_ub = np.zeros((D, T)), np.zeros((D, T)), np.zeros((D, T)), np.zeros((D, T))
    on_init, energy = np.zeros(D), np.zeros(D)
    for i, d in enumerate(inp.deferrable_loads):
        dl_ub[i, d.window_start : d.window_end] = d.p_max_kw
        on_ub[i, d.window_start : d.window_end] = 1.0
        start_ub[i, d.window_start : max(d.window_start, d.window_end - max(rules[i].min_run_steps, 1) + 1)] = 1.0
        energy[i] = d.energy_kwh
        if d.running_s_at_start > 0:
            on_init[i] = 1.0
            must = _steps_ceil(d.min_run_s - d.running_s_at_start, s)
            on_lb[i, :must] = 1.0
            on_lb[i] = np.minimum(on_lb[i], on_ub[i])  # the window prevails
    return {
        "dl_ub": dl_ub,
        "on_lb": on_lb,
        "on_ub": on_ub,
        "start_ub": start_ub,
        "on_init": on_init,
        "dl_energy": energy,
    }


def _dr_arrays(inp: OptimizerInputs) -> dict[str, np.ndarray]:
    T, dt = inp.n_steps, inp.dt_h
    red = [e for e in inp.dr_events if e.kind == "reduction"]
    mask = np.zeros((len(red), T), dtype=bool)
    rhs, pen = np.zeros(len(red)), np.zeros(len(red))
    for i, e in enumerate(red):
        mask[i, e.first_step : e.end_step] = True
        rhs[i] = float(np.sum(np.asarray(e.baseline_kw) - e.committed_kw)) * dt
        pen[i] = e.penalty_cny_per_kwh
    cap = np.full(T, BIG)
    cap_pen, cap_ub = np.zeros(T), np.zeros(T)
    for e in inp.dr_events:
        if e.kind == "import_cap":
            w = slice(e.first_step, e.end_step)
            cap[w] = np.minimum(cap[w], e.cap_kw)
            cap_pen[w] = np.maximum(cap_pen[w], e.penalty_cny_per_kwh)
            cap_ub[w] = BIG
    return {"red_mask": mask, "red_rhs": rhs, "red_penalty": pen, "cap_kw": cap, "cap_penalty": cap_pen,
            "cap_short_ub": cap_ub}  # fmt: skip


def derive(inp: OptimizerInputs) -> ModelData:
    """All model numbers for ``inp``; see the module docstring for the step rounding."""
    T, s, dt = inp.n_steps, inp.step_s, inp.dt_h
    rules = []
    for ld in inp.interruptible_loads:
        R = max(1, round(ld.rebound_s / s))
        rules.append(ShedRule(
            shed_kw=ld.shed_power_kw, rebound_kwh=ld.rebound_factor * ld.shed_power_kw * dt, rebound_steps=R,
            max_steps=_steps_floor(ld.max_shed_s, s), min_steps=_steps_ceil(ld.min_shed_s, s),
            gap_steps=_steps_ceil(ld.min_gap_s, s),
        ))  # fmt: skip
    defers = []
    for d in inp.deferrable_loads:
        L = _steps_ceil(d.min_run_s, s)
        defers.append(DeferRule(binary=d.p_min_kw > 0 or L >= 2, p_min_kw=d.p_min_kw, p_max_kw=d.p_max_kw,
                                min_run_steps=L))  # fmt: skip
    day = _day_index(inp)
    # Day slots: as many as a horizon of this length can touch, so that rolling on keeps the structure.
    n_days = max(int(day[-1]) + 1, math.ceil(T * s / 86400) + 1)
    structure = Structure(
        n_steps=T, step_s=s, n_pv=len(inp.pv),
        batteries=tuple((b.eta_charge, b.eta_discharge) for b in inp.batteries),
        sheds=tuple(rules), n_days=n_days, defers=tuple(defers),
        n_reduction_events=sum(e.kind == "reduction" for e in inp.dr_events),
        has_cap_events=any(e.kind == "import_cap" for e in inp.dr_events),
    )  # fmt: skip
    rebound0 = np.zeros((len(inp.interruptible_loads), T))
    for i, ld in enumerate(inp.interruptible_loads):
        k = min(T, len(ld.rebound_kw_initial))
        rebound0[i, :k] = ld.rebound_kw_initial[:k]
    running = np.array([ld.running_kw for ld in inp.interruptible_loads])
    rhs = np.asarray(inp.base_load_kw, dtype=float) + running.sum() + rebound0.sum(axis=0)
    bats = inp.batteries
    cap = np.array([b.capacity_kwh for b in bats])
    init = np.array([b.soc_init_pct for b in bats])
    e_min = np.array([b.soc_min_pct for b in bats])
    e_max = np.array([b.soc_max_pct for b in bats])
    eta = np.array(structure.batteries).reshape(-1, 2)
    return ModelData(
        structure=structure, dt=dt, rhs_balance=rhs,
        imp_ub=np.asarray(inp.import_cap_kw, dtype=float), exp_ub=np.asarray(inp.export_cap_kw, dtype=float),
        price_imp=np.asarray(inp.import_price_cny_per_kwh, dtype=float),
        price_exp=np.asarray(inp.export_price_cny_per_kwh, dtype=float),
        carbon=np.asarray(inp.carbon_kg_per_kwh, dtype=float),
        pv_ub=np.array([p.available_kw for p in inp.pv], dtype=float).reshape(len(inp.pv), T),
        e0=cap * init / 100, e_lo=cap * np.minimum(e_min, init) / 100, e_hi=cap * np.maximum(e_max, init) / 100,
        e_term=cap * np.array([b.soc_terminal_pct for b in bats]) / 100,
        pch=np.array([b.p_charge_max_kw for b in bats]), pdis=np.array([b.p_discharge_max_kw for b in bats]),
        deg=np.array([b.degradation_cny_per_kwh for b in bats]), cycle_tb=inp.settings.battery_tiebreak_cny_per_kwh,
        day_of_step=day, shed_cost=np.array([ld.shed_cost_cny_per_kwh for ld in inp.interruptible_loads]),
        il_running=running, il_rebound0=rebound0,
        run0=np.array([ld.shed_active_s / s for ld in inp.interruptible_loads]),
        demand_rate=inp.demand_charge_cny_per_kw, peak_lb=inp.month_peak_so_far_kw,
        loss_ch=1.0 - eta[:, 0] * eta[:, 1],
        **_shed_arrays(inp, rules, n_days), **_defer_arrays(inp, defers), **_dr_arrays(inp),
    )  # fmt: skip
