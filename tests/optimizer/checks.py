"""An independent check of a plan against its own inputs, written from the documented formulation only.

It reads nothing from the optimizer's model code: step rounding, rebound and every rule are re-derived
from ``plan.inputs`` as optimizer/README.md states them.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from optimizer.inputs import OptimizerInputs
from optimizer.plan import Plan


def _ceil_steps(seconds: float, step_s: int) -> int:
    return max(0, math.ceil(seconds / step_s - 1e-9))


def _episodes(shed: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) of each run of True."""
    out, start = [], None
    for t, s in enumerate([*shed.tolist(), False]):
        if s and start is None:
            start = t
        elif not s and start is not None:
            out.append((start, t))
            start = None
    return out


def interruptible_p(inp: OptimizerInputs, i: int, shed: np.ndarray) -> np.ndarray:
    """Running - shed + rebound. A shed of n steps brings back ``rebound_factor * kw * n * dt`` kWh (n counts
    what a shed in progress at the start had already, ``shed_active_s / s``), from the restore on over R
    steps, decaying linearly from twice its mean: step j after the restore takes the share of the
    triangle between ``j/R`` and ``(j+1)/R``."""
    ld = inp.interruptible_loads[i]
    T, s, dt = inp.n_steps, inp.step_s, inp.dt_h
    kw = ld.shed_power_kw
    R = max(1, round(ld.rebound_s / s))
    p = np.full(T, ld.running_kw) - kw * shed
    for a, b in _episodes(shed.astype(bool)):
        if b >= T:
            continue  # restored after the horizon
        n = (b - a) + (ld.shed_active_s / s if a == 0 else 0.0)
        kwh = ld.rebound_factor * kw * n * dt
        for j in range(R):
            if b + j < T:
                share = (1.0 - j / R) ** 2 - (1.0 - (j + 1) / R) ** 2
                p[b + j] += kwh * share / dt
    k0 = min(T, len(ld.rebound_kw_initial))
    p[:k0] += np.asarray(ld.rebound_kw_initial[:k0])
    return p


def violations(plan: Plan, tol: float = 1e-4) -> list[str]:
    """Every broken rule as a readable string; empty when the plan is feasible."""
    inp = plan.inputs
    T, dt, s = inp.n_steps, inp.dt_h, inp.step_s
    out: list[str] = []
    imp, exp = np.array(plan.grid_import_kw), np.array(plan.grid_export_kw)
    base = np.array(inp.base_load_kw)
    loads = {ld.id: ld for ld in plan.loads}
    load = base.copy()
    for ld in plan.loads:
        load += np.array(ld.p_kw)
    if np.abs(load - np.array(plan.load_kw)).max(initial=0) > tol:
        out.append("load_kw is not base + loads")
    pv_total = np.zeros(T)
    for k, p in enumerate(plan.pv):
        lim, avail = np.array(p.limit_kw), np.array(inp.pv[k].available_kw)
        if (lim < -tol).any() or (lim > avail + tol).any():
            out.append(f"{p.id}: PV limit outside [0, available]")
        pv_total += lim
    bat_total = np.zeros(T)
    for k, b in enumerate(plan.batteries):
        cfg = inp.batteries[k]
        p = np.array(b.p_kw)
        bat_total += p
        if (p > cfg.p_discharge_max_kw + tol).any() or (p < -cfg.p_charge_max_kw - tol).any():
            out.append(f"{b.id}: power outside its limits")
        ch, dis = np.maximum(-p, 0), np.maximum(p, 0)
        stored = np.cumsum(dt * (cfg.eta_charge * ch - dis / cfg.eta_discharge))
        soc = cfg.soc_init_pct + stored * 100 / cfg.capacity_kwh
        if np.abs(soc - np.array(b.soc_pct)).max(initial=0) > 1e-3:
            out.append(f"{b.id}: SoC does not follow the net power (hidden simultaneous charge/discharge?)")
        lo, hi = min(cfg.soc_min_pct, cfg.soc_init_pct), max(cfg.soc_max_pct, cfg.soc_init_pct)
        if (soc < lo - 1e-3).any() or (soc > hi + 1e-3).any():
            out.append(f"{b.id}: SoC outside [{lo}, {hi}]")
        if not plan.fallback and soc[-1] < cfg.soc_terminal_pct - 1e-3:
            out.append(f"{b.id}: terminal SoC {soc[-1]:.3f} below {cfg.soc_terminal_pct}")
    if np.abs(imp - exp + pv_total + bat_total - load).max(initial=0) > tol:
        out.append("power balance broken")
    if (np.minimum(imp, exp) > tol).any():
        out.append("simultaneous import and export")
    if not plan.fallback and (imp > np.array(inp.import_cap_kw) + tol).any():
        out.append("import above the cap")
    if (exp > np.array(inp.export_cap_kw) + tol).any():
        out.append("export above the cap")
    for i, cfg in enumerate(inp.interruptible_loads):
        lp = loads[cfg.id]
        shed = ~np.array(lp.on)
        if np.abs(interruptible_p(inp, i, shed.astype(float)) - np.array(lp.p_kw)).max(initial=0) > tol:
            out.append(f"{cfg.id}: power is not running - shed + rebound")
        D = math.floor(cfg.max_shed_s / s + 1e-9)
        U = max(_ceil_steps(cfg.min_shed_s, s), 1)
        G = max(_ceil_steps(cfg.min_gap_s, s), 1)
        eps = _episodes(shed)
        for k, (a, b) in enumerate(eps):
            ongoing = a == 0 and cfg.shed_active_s > 0
            if ongoing:
                allowed = math.floor(max(0.0, cfg.max_shed_s - cfg.shed_active_s) / s + 1e-9)
                if b - a > allowed:
                    out.append(f"{cfg.id}: shed in progress kept {b - a} steps, allowed {allowed}")
            else:
                if b - a > D:
                    out.append(f"{cfg.id}: shed of {b - a} steps longer than {D}")
                if b - a < U and b < T:
                    out.append(f"{cfg.id}: shed of {b - a} steps shorter than {U}")
            if k and a - eps[k - 1][1] < G:
                out.append(f"{cfg.id}: only {a - eps[k - 1][1]} steps between sheds, need {G}")
            recent = cfg.since_last_shed_s is not None and cfg.shed_active_s == 0
            if recent and not ongoing and a < _ceil_steps(cfg.min_gap_s - (cfg.since_last_shed_s or 0.0), s):
                out.append(f"{cfg.id}: shed at step {a}, too soon after the last one")
        day0 = inp.start.date()
        per_day: dict[int, int] = {}
        for a, _b in eps:
            if a == 0 and cfg.shed_active_s > 0:
                continue
            day = ((inp.start + timedelta(seconds=a * s)).date() - day0).days
            per_day[day] = per_day.get(day, 0) + 1
        for day, n in per_day.items():
            limit = cfg.max_sheds_per_day - (cfg.sheds_today if day == 0 else 0)
            if n > max(limit, 0):
                out.append(f"{cfg.id}: {n} sheds on day {day}, limit {limit}")
    for cfg in inp.deferrable_loads:
        lp = loads[cfg.id]
        p, on = np.array(lp.p_kw), np.array(lp.on)
        outside = np.ones(T, bool)
        outside[cfg.window_start : cfg.window_end] = False
        if (np.abs(p[outside]) > tol).any():
            out.append(f"{cfg.id}: runs outside its window")
        if (p[on] < cfg.p_min_kw - tol).any() or (p > cfg.p_max_kw + tol).any() or (p[~on] > tol).any():
            out.append(f"{cfg.id}: power outside {{0}} U [p_min, p_max]")
        if not plan.fallback and abs(p.sum() * dt - cfg.energy_kwh) > 1e-3:
            out.append(f"{cfg.id}: energy {p.sum() * dt:.4f} kWh, needs {cfg.energy_kwh}")
        L = _ceil_steps(cfg.min_run_s, s)
        for a, b in _episodes(on):
            ran_before = cfg.running_s_at_start > 0 and a == 0
            need = L - (_ceil_steps(cfg.running_s_at_start, s) if ran_before else 0)
            if b - a < need:
                out.append(f"{cfg.id}: run of {b - a} steps shorter than {need}")
    o = plan.objective
    parts = o.energy_cny + o.demand_cny + o.degradation_cny + o.shed_cny + o.rebound_after_horizon_cny
    if abs(o.cost_cny - parts - o.dr_penalty_cny) > 1e-6 * max(1.0, abs(o.cost_cny)):
        out.append("cost breakdown does not add up")
    energy = dt * float(np.array(inp.import_price_cny_per_kwh) @ imp - np.array(inp.export_price_cny_per_kwh) @ exp)
    if abs(energy - o.energy_cny) > 1e-6 * max(1.0, abs(energy)):
        out.append("energy cost does not match the flows")
    return out
