"""Column bounds, row bounds and objective coefficients per model family, as flat numpy arrays.

This is the one place the data enters the model: :mod:`optimizer.model` builds the Pyomo components from
these arrays, and :mod:`optimizer.lp` scatters the same arrays into a live HiGHS instance when only data
changes (rolling re-solve). Infinite bounds are ``+-BIG``.
"""

from __future__ import annotations

import numpy as np

from optimizer.data import BIG, ModelData, rebound_shares, run_cap

Bounds = dict[str, tuple[np.ndarray, np.ndarray]]


def binary_deferrables(d: ModelData) -> list[int]:
    return [i for i, r in enumerate(d.structure.defers) if r.binary]


def column_bounds(d: ModelData) -> Bounds:
    S, T = d.structure, d.structure.n_steps
    B, L, n_d = len(S.batteries), len(S.sheds), len(S.defers)
    bi = binary_deferrables(d)
    z = np.zeros

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.asarray(a, dtype=float), T)

    out: Bounds = {
        "imp": (z(T), d.imp_ub),
        "exp": (z(T), d.exp_ub),
        "imp_excess": (z(T), z(T)),
        "pv": (z(S.n_pv * T), d.pv_ub.ravel()),
        "ch": (z(B * T), rep(d.pch)),
        "dis": (z(B * T), rep(d.pdis)),
        "ch_grid": (z(B * T), rep(d.pch)),
        "soe": (rep(d.e_lo), rep(d.e_hi)),
        "soe_short": (z(B), z(B)),
        "peak": (np.array([d.peak_lb]), np.array([BIG])),
        "shed": (d.shed_lb.ravel(), d.shed_ub.ravel()),
        "shed_start": (z(L * T), np.ones(L * T)),
        "shed_end": (z(L * T), np.ones(L * T)),
        "shed_day_pad": (z(L * S.n_days), z(L * S.n_days)),
        "rb_run": (z(L * T), np.repeat([run_cap(r) for r in S.sheds], T)),
        "rb_rel": (z(L * T), np.repeat([run_cap(r) for r in S.sheds], T)),
        "dl_p": (z(n_d * T), d.dl_ub.ravel()),
        "dl_short": (z(n_d), z(n_d)),
        "dl_on": (d.on_lb[bi].ravel(), d.on_ub[bi].ravel()),
        "dl_start": (z(len(bi) * T), d.start_ub[bi].ravel()),
        "dr_short": (z(S.n_reduction_events), np.full(S.n_reduction_events, BIG)),
    }
    if S.has_cap_events:
        out["cap_short"] = (z(T), d.cap_short_ub)
    return out


def row_bounds(d: ModelData, green_floor: float | None = None) -> Bounds:
    S, T = d.structure, d.structure.n_steps
    B = len(S.batteries)
    z, inf = np.zeros, np.full

    def first(values: np.ndarray) -> np.ndarray:
        a = z((len(values), T))
        a[:, 0] = values
        return a.ravel()

    out: Bounds = {
        "balance": (d.rhs_balance, d.rhs_balance),
        "soe_dyn": (first(d.e0), first(d.e0)),
        "soe_term": (d.e_term, inf(B, BIG)),
        "peak_def": (z(T), inf(T, BIG)),
        "shed_link": (first(d.shed_init), first(d.shed_init)),
    }
    if B:
        out["grid_charge"] = (inf(B * T, -BIG), z(B * T))
        out["grid_to_storage"] = (inf(T, -BIG), z(T))
    for i in range(len(S.sheds)):
        out[f"shed_maxdur_{i}"] = (inf(T, -BIG), d.maxdur_rhs[i])
        out[f"shed_minup_{i}"] = (inf(T, -BIG), z(T))
        out[f"shed_mingap_{i}"] = (inf(T, -BIG), np.ones(T))
        out[f"shed_day_{i}"] = (inf(S.n_days, -BIG), d.day_rhs[i])
        r0, cap = np.zeros(T), run_cap(S.sheds[i])
        r0[0] = d.run0[i]
        out[f"rb_flow_{i}"] = (r0, r0.copy())
        out[f"rb_hold_{i}"] = (inf(T, -BIG), z(T))
        out[f"rb_free_{i}"] = (inf(T, -BIG), np.full(T, cap))
    out["dl_energy"] = (d.dl_energy, d.dl_energy)
    for j, i in enumerate(binary_deferrables(d)):
        r = S.defers[i]
        out[f"dl_pmax_{j}"] = (inf(T, -BIG), z(T))
        if r.p_min_kw > 0:
            out[f"dl_pmin_{j}"] = (z(T), inf(T, BIG))
        link = z(T)
        link[0] = d.on_init[i]
        out[f"dl_link_{j}"] = (inf(T, -BIG), link)
        out[f"dl_minrun_{j}"] = (inf(T, -BIG), z(T))
    out["dr_red"] = (inf(S.n_reduction_events, -BIG), d.red_rhs)
    if S.has_cap_events:
        out["dr_cap"] = (inf(T, -BIG), d.cap_kw)
    out["green_floor"] = (np.array([-BIG if green_floor is None else green_floor]), np.array([BIG]))
    return out


def cost_coefs(d: ModelData) -> dict[str, np.ndarray]:
    """CNY per unit of each variable; the constant is ``cost_offset``."""
    S, T, dt = d.structure, d.structure.n_steps, d.dt
    shed = dt * np.repeat(d.shed_cost * np.array([r.shed_kw for r in S.sheds]), T)
    out = {
        "imp": dt * d.price_imp,
        "exp": -dt * d.price_exp,
        "peak": np.array([d.demand_rate]),
        "dis": dt * (np.repeat(d.deg, T) + d.cycle_tb),
        "ch": np.full(len(S.batteries) * T, dt * d.cycle_tb),
        "shed": shed,
        **after_horizon_rebound(d),
        "dr_short": np.asarray(d.red_penalty, dtype=float),
    }
    if S.has_cap_events:
        out["cap_short"] = dt * d.cap_penalty
    return out


def after_horizon_rebound(d: ModelData) -> dict[str, np.ndarray]:
    """CNY per unit of ``rb_run`` / ``rb_rel`` for the rebound that falls after the horizon, at the last price.

    A load still shed at the end brings all of its run back later; one restored near the end, the shares
    of its rebound past the last step. Without this a shed near the end would look free of its rebound.
    """
    S, T = d.structure, d.structure.n_steps
    run, rel = np.zeros((len(S.sheds), T)), np.zeros((len(S.sheds), T))
    for i, r in enumerate(S.sheds):
        price = r.rebound_kwh * d.price_imp[-1]
        run[i, -1] = price
        tail = np.cumsum(rebound_shares(r)[::-1])[::-1]  # tail[j]: share from step j of the restore on
        for j in range(1, min(r.rebound_steps, T + 1)):
            rel[i, T - j] = price * tail[j]
    return {"rb_run": run.ravel(), "rb_rel": rel.ravel()}


def cost_offset(d: ModelData) -> float:
    return -d.demand_rate * d.peak_lb


def green_coefs(d: ModelData) -> dict[str, np.ndarray]:
    """kWh of green energy per unit of each variable (see the objective in :mod:`optimizer.model`)."""
    T, dt = d.structure.n_steps, d.dt
    return {
        "pv": np.full(d.structure.n_pv * T, dt),
        "exp": np.full(T, -dt),
        "ch": -dt * np.repeat(d.loss_ch, T),
        "ch_grid": dt * np.repeat(d.loss_ch, T),
    }


def diagnosis_slacks(d: ModelData) -> dict[str, tuple[str, np.ndarray]]:
    """Slack families a diagnosis frees, with the constraint family each one stands for and its upper bound."""
    S, T = d.structure, d.structure.n_steps
    return {
        "imp_excess": ("import_cap", np.full(T, BIG)),
        "soe_short": ("battery_terminal_soc", np.full(len(S.batteries), BIG)),
        "dl_short": ("deferrable_energy", np.full(len(S.defers), BIG)),
    }
