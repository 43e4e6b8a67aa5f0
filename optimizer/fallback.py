"""A safe rule-based plan for when the optimizer has nothing to offer (infeasible inputs, no incumbent).

Greedy self-consumption over the forecast, step by step: no interruptible load is shed; each deferrable
load runs from the start of its window (or keeps running) at the power that spreads its energy over
``max(L, ceil(E/(p_max*dt)))`` steps, clipped to ``[p_min, p_max]``; PV surplus charges the batteries
(in input order, within power and SoC limits), then is exported within the export cap, and the rest is
curtailed; a deficit is covered by discharging the batteries down to their lower SoC bound, then by
import. Import above the cap is reported, never hidden.
"""

from __future__ import annotations

import math

import numpy as np

from optimizer.data import ModelData
from optimizer.flows import Flows, load_kw
from optimizer.inputs import OptimizerInputs


def _deferrable(inputs: OptimizerInputs, d: ModelData) -> np.ndarray:
    T, dt = d.n_steps, d.dt
    out = np.zeros((len(inputs.deferrable_loads), T))
    for i, dl in enumerate(inputs.deferrable_loads):
        if dl.energy_kwh <= 0:
            continue
        rule = d.structure.defers[i]
        n = max(rule.min_run_steps, math.ceil(dl.energy_kwh / (dl.p_max_kw * dt) - 1e-9), 1)
        first = 0 if dl.running_s_at_start > 0 else dl.window_start
        last = min(first + n, dl.window_end if first >= dl.window_start else T)
        p = min(max(dl.energy_kwh / (n * dt), dl.p_min_kw), dl.p_max_kw)
        out[i, first:last] = p
    return out


def fallback_flows(inputs: OptimizerInputs, d: ModelData) -> tuple[Flows, list[str]]:
    """The greedy plan's flows and notes on anything it could not respect."""
    T, dt = d.n_steps, d.dt
    B = len(d.structure.batteries)
    eta = np.array(d.structure.batteries).reshape(-1, 2)
    shed = np.zeros((len(d.structure.sheds), T))
    dl = _deferrable(inputs, d)
    load = load_kw(d, shed, dl)
    pv = d.pv_ub.copy()
    ch, dis, soe = np.zeros((B, T)), np.zeros((B, T)), np.zeros((B, T))
    imp, exp = np.zeros(T), np.zeros(T)
    e = d.e0.copy()
    for t in range(T):
        net = load[t] - pv[:, t].sum()
        for b in range(B):
            if net < 0:  # surplus: charge
                c = min(d.pch[b], max(d.e_hi[b] - e[b], 0.0) / (eta[b, 0] * dt), -net)
                ch[b, t], net = c, net + c
                e[b] += eta[b, 0] * c * dt
            elif net > 0:  # deficit: discharge
                x = min(d.pdis[b], max(e[b] - d.e_lo[b], 0.0) * eta[b, 1] / dt, net)
                dis[b, t], net = x, net - x
                e[b] -= x / eta[b, 1] * dt
            soe[b, t] = e[b]
        if net < 0:
            exp[t] = min(-net, d.exp_ub[t])
            spill = -net - exp[t]
            avail = pv[:, t].sum()
            if spill > 0 and avail > 0:
                pv[:, t] *= 1.0 - min(spill / avail, 1.0)
        else:
            imp[t] = net
    notes = ["rule-based fallback: greedy self-consumption, no sheds, deferrable loads as early as allowed"]
    over = np.flatnonzero(imp > d.imp_ub + 1e-6)
    if len(over):
        notes.append(f"import above the cap at {len(over)} steps (first {over[:5].tolist()})")
    on = dl > 0
    return Flows(imp=imp, exp=exp, pv=pv, ch=ch, dis=dis, soe=soe, shed=shed, dl=dl, dl_on=on), notes
