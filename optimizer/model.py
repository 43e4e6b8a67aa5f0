"""The Pyomo formulation: one linear model, solved lexicographically (green first, then cost).

Notation: steps ``t = 0..T-1`` of ``dt`` hours; all powers are step means in kW, energies kWh.
Variables (all >= 0; bounds are data from :mod:`optimizer.data`):

- ``imp[t] <= import_cap[t]``, ``exp[t] <= export_cap[t]``; ``pv[p,t] <= available[p,t]`` (the PV limit);
  ``ch[b,t] <= p_charge_max``, ``dis[b,t] <= p_discharge_max``; ``soe[b,t]`` battery energy at the END of
  step t, in ``[e_lo, e_hi]`` with ``e_lo = cap*min(soc_min, soc_init)``, ``e_hi = cap*max(soc_max, soc_init)``
  (a battery that starts outside its band may stay where it is, never move further out);
- ``shed[l,t]`` binary (1 = interruptible load l shed), ``shed_start``/``shed_end`` in [0,1];
- deferrable ``dl_p[d,t] <= p_max`` inside the window, 0 outside; if ``p_min > 0`` or ``L >= 2``:
  ``dl_on[d,t]`` binary (0 outside the window) and ``dl_start[d,t]`` in [0,1];
- ``peak >= month_peak_so_far``; DR shortfalls ``dr_short[e]`` (kWh), ``cap_short[t]`` (kW);
- diagnosis slacks ``imp_excess[t]``, ``soe_short[b]``, ``dl_short[d]``: upper bound 0 in a normal solve.

Constraints:

- balance[t]: ``imp - exp + imp_excess + sum pv + sum (dis - ch) + sum_l shed_kw*shed[l,t]
  - sum_l sum_{j<R} share_j*a/dt*rb_rel[l,t-j] - sum_d dl_p[d,t] = base_load + sum_l running_kw
  + rebound_initial[t]`` with ``a = rebound_factor*shed_kw*dt`` and ``share_j = (2(R-j)-1)/R^2``;
- rebound (``M = max(D,1) + 1`` steps), rb_flow: ``rb_run[t] = rb_run[t-1] + shed[t] - rb_rel[t]`` with
  ``rb_run[-1] = shed_active_s/s``; rb_hold ``rb_run <= M*shed``; rb_free ``rb_rel <= M*(1 - shed)``. For
  0/1 sheds ``rb_run`` is the run of shed steps so far and ``rb_rel[t]`` the whole run, released at the
  restore; the flow keeps the relaxation's rebound energy exact. A new shed does not cut a rebound short;
- soe_dyn[b,t]: ``soe[t] = soe[t-1] + dt*eta_c*ch[t] - dt/eta_d*dis[t]`` with ``soe[-1] = e0``;
  soe_term[b]: ``soe[T-1] + soe_short >= cap*soc_terminal/100``;
- peak_def[t]: ``peak >= imp[t]``;
- shed_link: ``shed[t] - shed[t-1] = shed_start[t] - shed_end[t]`` (``shed[-1]`` = shed at start);
  shed_maxdur: ``shed[t] <= sum_{t-D+1..t} shed_start + ongoing[t]`` (a shed step needs a start within
  the last D steps; ``ongoing[t] = 1`` for the first ``floor((max_shed_s - shed_active_s)/s)`` steps when
  shed at the start); shed_minup: ``sum_{t-U'+1..t} shed_start <= shed[t]``; shed_mingap:
  ``sum_{t-G'+1..t} shed_end + shed[t] <= 1`` with ``U' = max(U,1)``, ``G' = max(Gp,1)`` (so start/end
  are exact indicators); shed_day[l,k]: ``sum_{t in local day k} shed_start + shed_day_pad <= N`` (minus
  ``sheds_today`` on the first day; the pad, fixed at 0, keeps rows of day slots the horizon does not reach
  so that rolling on keeps the structure). Bounds: shed stays 1 for the rest of ``min_shed_s`` of a shed in
  progress, 0 for the rest of ``min_gap_s`` after a recent one, 0 throughout if ``D < 1``.
- dl_pmax ``dl_p <= p_max*dl_on``, dl_pmin ``dl_p >= p_min*dl_on``, dl_link ``dl_on[t]-dl_on[t-1] <=
  dl_start[t]`` (``dl_on[-1]`` = running at the start), dl_minrun ``sum_{t-L'+1..t} dl_start <= dl_on[t]``
  with ``L' = max(L,1)``; dl_energy[d]:
  ``dt*sum_t dl_p + dl_short = energy_kwh`` (exactly: the load takes what it needs, no more);
- dr_red[e]: ``dt*sum_{t in window} imp - dr_short <= dt*sum (baseline - committed)``;
  dr_cap[t]: ``imp - cap_short <= cap`` (lowest cap, highest penalty of the events covering t);
- grid_charge: ``ch_grid[b,t] <= ch[b,t]``; grid_to_storage[t]: ``sum_b ch_grid[b,t] <= imp[t]``
  (the part of a charge the grid can be said to supply; the rest came from PV);
- green_floor: ``green >= floor`` (-inf in stage 1, see below).

Objectives. Green energy used on site (kWh)
``green = dt * sum_t [ sum_p pv - exp - sum_b (1 - eta_c*eta_d) * (ch - ch_grid) ]``:
PV kept on site (not curtailed, not exported; export is charged to PV first, as sim/kpi.py counts
``green_utilization``), less the round-trip loss of the PV that goes through storage (stored PV counts at
what it can deliver). Grid charging neither adds nor costs green, so the cost stage is free to use the
batteries for arbitrage and peak shaving; and cycling a battery to burn PV gains no green (its loss is
counted), so the relaxation of the no-simultaneous-charge rule stays exact in effect (see
:mod:`optimizer.flows`).
Cost (CNY) ``= dt*sum (price_imp*imp - price_exp*exp) + demand_rate*(peak - month_peak_so_far)
+ dt*sum deg*dis + dt*sum shed_cost*shed_kw*shed + sum dr_penalty*dr_short + dt*sum cap_penalty*cap_short
+ price_imp[T-1]*a*(rb_run[T-1] + sum_{j>=1} rb_rel[T-j]*sum_{j'>=j} share_j')``, the last term pricing the
rebound that falls after the horizon. Battery degradation is charged on
discharged energy, as sim/kpi.py accounts it, plus ``battery_tiebreak_cny_per_kwh`` (1e-5 by default) on
every kWh charged or discharged so that ties never cycle a battery for nothing; both are in
``degradation_cny``.
Lexicographic order (see :mod:`optimizer.solve`): minimise cost subject to ``green >= G_LP - tol``, with
``G_LP`` the largest green of the linear relaxation and ``tol = max(green_abs_tol_kwh, green_rel_tol * PV
available kWh)``; the full definition, including the rare fallback floor, is in optimizer/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from optimizer.bounds import (
    Bounds,
    binary_deferrables,
    column_bounds,
    cost_coefs,
    cost_offset,
    green_coefs,
    row_bounds,
)
from optimizer.data import BIG, ModelData, rebound_shares, run_cap

Terms = tuple[list[float], list[object]]
RowFn = Callable[[int], Terms]


def _num(v: float) -> float | None:
    return None if abs(v) >= BIG else v


def _vars(m: pyo.ConcreteModel, name: str) -> list[object]:
    """The family's VarData as a plain list: indexing it is several times cheaper than ``Var[i]``."""
    return list(m.component(name).values())


def _var(m: pyo.ConcreteModel, cb: Bounds, name: str, binary: bool = False) -> list[object]:
    lo = [_num(v) for v in cb[name][0].tolist()]
    hi = [_num(v) for v in cb[name][1].tolist()]
    v = pyo.Var(range(len(lo)), domain=pyo.Binary if binary else pyo.Reals, bounds=lambda _m, i: (lo[i], hi[i]))
    m.add_component(name, v)
    return list(v.values())


def _rows(m: pyo.ConcreteModel, rb: Bounds, name: str, fn: RowFn) -> None:
    lo = [_num(v) for v in rb[name][0].tolist()]
    hi = [_num(v) for v in rb[name][1].tolist()]

    def rule(_m: pyo.ConcreteModel, i: int) -> object:
        coefs, xs = fn(i)
        low = -BIG if lo[i] is None and hi[i] is None else lo[i]  # a free row must keep a bound to exist
        return (low, LinearExpression(linear_coefs=coefs, linear_vars=xs), hi[i])

    m.add_component(name, pyo.Constraint(range(len(lo)), rule=rule))


def _window(v: Sequence[object], base: int, t: int, width: int) -> list[object]:
    """Variables ``v[base + tau]`` for ``tau = max(0, t-width+1) .. t``."""
    return [v[base + tau] for tau in range(max(0, t - width + 1), t + 1)]


def _linear(m: pyo.ConcreteModel, coefs: dict[str, np.ndarray], constant: float = 0.0) -> LinearExpression:
    c: list[float] = []
    x: list[object] = []
    for name, values in coefs.items():
        comp = _vars(m, name)
        for i, v in enumerate(values.tolist()):
            if v != 0.0:
                c.append(v)
                x.append(comp[i])
    return LinearExpression(constant=constant, linear_coefs=c, linear_vars=x)


def build_model(d: ModelData, green_floor: float | None = None) -> pyo.ConcreteModel:
    """The Pyomo model for ``d`` (see the module docstring for the exact formulation).

    Both objectives are declared; ``obj_green`` is active and ``obj_cost`` inactive (stage 1), swap them
    and set ``green_floor`` for stage 2.
    """
    S, T = d.structure, d.structure.n_steps
    P, B = S.n_pv, len(S.batteries)
    cb, rb = column_bounds(d), row_bounds(d, green_floor)
    m = pyo.ConcreteModel(name="park")
    imp, exp, imp_x = _var(m, cb, "imp"), _var(m, cb, "exp"), _var(m, cb, "imp_excess")
    pv, ch, dis, soe = _var(m, cb, "pv"), _var(m, cb, "ch"), _var(m, cb, "dis"), _var(m, cb, "soe")
    soe_short, peak = _var(m, cb, "soe_short"), _var(m, cb, "peak")
    shed = _var(m, cb, "shed", binary=True)
    for name in ("shed_start", "shed_end", "shed_day_pad", "rb_run", "dl_p", "dl_short"):
        _var(m, cb, name)
    rb_rel = _var(m, cb, "rb_rel")
    _var(m, cb, "dl_on", binary=True)
    _var(m, cb, "dl_start")
    _var(m, cb, "dr_short")
    if S.has_cap_events:
        _var(m, cb, "cap_short")
    dl_p = _vars(m, "dl_p")
    n_d = len(S.defers)

    def balance(t: int) -> Terms:
        c: list[float] = [1.0, -1.0, 1.0]
        x: list[object] = [imp[t], exp[t], imp_x[t]]
        for p in range(P):
            c.append(1.0)
            x.append(pv[p * T + t])
        for b in range(B):
            c += [1.0, -1.0]
            x += [dis[b * T + t], ch[b * T + t]]
        for i, r in enumerate(S.sheds):
            c.append(r.shed_kw)
            x.append(shed[i * T + t])
            for j, share in enumerate(rebound_shares(r)[: t + 1]):
                c.append(-share * r.rebound_kwh / d.dt)
                x.append(rb_rel[i * T + t - j])
        for i in range(n_d):
            c.append(-1.0)
            x.append(dl_p[i * T + t])
        return c, x

    _rows(m, rb, "balance", balance)

    def soe_dyn(k: int) -> Terms:
        b, t = divmod(k, T)
        ec, ed = S.batteries[b]
        c, x = [1.0, -d.dt * ec, d.dt / ed], [soe[k], ch[k], dis[k]]
        if t > 0:
            c.append(-1.0)
            x.append(soe[k - 1])
        return c, x

    _rows(m, rb, "soe_dyn", soe_dyn)
    ch_grid = _var(m, cb, "ch_grid")
    if B:
        _rows(m, rb, "grid_charge", lambda k: ([1.0, -1.0], [ch_grid[k], ch[k]]))
        _rows(m, rb, "grid_to_storage", lambda t: (
            [1.0] * B + [-1.0], [*(ch_grid[b * T + t] for b in range(B)), imp[t]]))  # fmt: skip
    _rows(m, rb, "soe_term", lambda b: ([1.0, 1.0], [soe[b * T + T - 1], soe_short[b]]))
    _rows(m, rb, "peak_def", lambda t: ([1.0, -1.0], [peak[0], imp[t]]))
    _add_shed_rows(m, rb, d)
    _add_defer_rows(m, rb, d)
    _add_dr_rows(m, rb, d)
    green = _linear(m, green_coefs(d))
    _rows(m, rb, "green_floor", lambda _i: (list(green.linear_coefs), list(green.linear_vars)))
    m.obj_green = pyo.Objective(expr=green, sense=pyo.maximize)
    m.obj_cost = pyo.Objective(expr=_linear(m, cost_coefs(d), cost_offset(d)), sense=pyo.minimize)
    m.obj_cost.deactivate()
    return m


def _add_shed_rows(m: pyo.ConcreteModel, rb: Bounds, d: ModelData) -> None:
    S, T = d.structure, d.structure.n_steps
    shed, y, w, pad = (_vars(m, n) for n in ("shed", "shed_start", "shed_end", "shed_day_pad"))

    def link(k: int) -> Terms:
        t = k % T
        if t == 0:
            return [1.0, -1.0, 1.0], [shed[k], y[k], w[k]]
        return [1.0, -1.0, 1.0, -1.0], [shed[k], y[k], w[k], shed[k - 1]]

    _rows(m, rb, "shed_link", link)
    for i, r in enumerate(S.sheds):
        base = i * T
        width_d, width_u, width_g = max(r.max_steps, 1), max(r.min_steps, 1), max(r.gap_steps, 1)

        def maxdur(t: int, base: int = base, width: int = width_d) -> Terms:
            ys = _window(y, base, t, width)
            return [1.0] + [-1.0] * len(ys), [shed[base + t], *ys]

        def minup(t: int, base: int = base, width: int = width_u) -> Terms:
            ys = _window(y, base, t, width)
            return [1.0] * len(ys) + [-1.0], [*ys, shed[base + t]]

        def mingap(t: int, base: int = base, width: int = width_g) -> Terms:
            ws = _window(w, base, t, width)
            return [1.0] * (len(ws) + 1), [*ws, shed[base + t]]

        def day(k: int, base: int = base, i: int = i) -> Terms:
            steps = np.flatnonzero(d.day_of_step == k)  # may be empty: the pad (fixed at 0) keeps the row
            return [1.0] * (len(steps) + 1), [*(y[base + int(t)] for t in steps), pad[i * S.n_days + k]]

        _rows(m, rb, f"shed_maxdur_{i}", maxdur)
        _rows(m, rb, f"shed_minup_{i}", minup)
        _rows(m, rb, f"shed_mingap_{i}", mingap)
        _rows(m, rb, f"shed_day_{i}", day)
    _add_rebound_rows(m, rb, d)


def _add_rebound_rows(m: pyo.ConcreteModel, rb: Bounds, d: ModelData) -> None:
    """Run length and released run of each load (see the module docstring); right-hand sides hold ``run0``."""
    S, T = d.structure, d.structure.n_steps
    shed, run, rel = (_vars(m, n) for n in ("shed", "rb_run", "rb_rel"))
    for i, r in enumerate(S.sheds):
        base, cap = i * T, run_cap(r)

        def flow(t: int, base: int = base) -> Terms:
            k = base + t
            c, x = [1.0, -1.0, 1.0], [run[k], shed[k], rel[k]]
            return ([*c, -1.0], [*x, run[k - 1]]) if t else (c, x)

        def hold(t: int, base: int = base, cap: float = cap) -> Terms:
            return [1.0, -cap], [run[base + t], shed[base + t]]

        def free(t: int, base: int = base, cap: float = cap) -> Terms:
            return [1.0, cap], [rel[base + t], shed[base + t]]

        _rows(m, rb, f"rb_flow_{i}", flow)
        _rows(m, rb, f"rb_hold_{i}", hold)
        _rows(m, rb, f"rb_free_{i}", free)


def _add_defer_rows(m: pyo.ConcreteModel, rb: Bounds, d: ModelData) -> None:
    S, T, dt = d.structure, d.structure.n_steps, d.dt
    p, short, on, z = (_vars(m, n) for n in ("dl_p", "dl_short", "dl_on", "dl_start"))

    def energy(i: int) -> Terms:
        return [dt] * T + [1.0], [*(p[i * T + t] for t in range(T)), short[i]]

    _rows(m, rb, "dl_energy", energy)
    for j, i in enumerate(binary_deferrables(d)):
        r, pb, ob = S.defers[i], i * T, j * T
        width = max(r.min_run_steps, 1)

        def pmax(t: int, pb: int = pb, ob: int = ob, cap: float = r.p_max_kw) -> Terms:
            return [1.0, -cap], [p[pb + t], on[ob + t]]

        def pmin(t: int, pb: int = pb, ob: int = ob, low: float = r.p_min_kw) -> Terms:
            return [1.0, -low], [p[pb + t], on[ob + t]]

        def link(t: int, ob: int = ob) -> Terms:
            if t == 0:
                return [1.0, -1.0], [on[ob], z[ob]]
            return [1.0, -1.0, -1.0], [on[ob + t], z[ob + t], on[ob + t - 1]]

        def minrun(t: int, ob: int = ob, width: int = width) -> Terms:
            zs = _window(z, ob, t, width)
            return [1.0] * len(zs) + [-1.0], [*zs, on[ob + t]]

        _rows(m, rb, f"dl_pmax_{j}", pmax)
        if r.p_min_kw > 0:
            _rows(m, rb, f"dl_pmin_{j}", pmin)
        _rows(m, rb, f"dl_link_{j}", link)
        _rows(m, rb, f"dl_minrun_{j}", minrun)


def _add_dr_rows(m: pyo.ConcreteModel, rb: Bounds, d: ModelData) -> None:
    S, dt = d.structure, d.dt
    imp, short = _vars(m, "imp"), _vars(m, "dr_short")

    def reduction(e: int) -> Terms:
        steps = np.flatnonzero(d.red_mask[e])
        return [dt] * len(steps) + [-1.0], [*(imp[int(t)] for t in steps), short[e]]

    _rows(m, rb, "dr_red", reduction)
    if S.has_cap_events:
        cap_short = _vars(m, "cap_short")
        _rows(m, rb, "dr_cap", lambda t: ([1.0, -1.0], [imp[t], cap_short[t]]))
