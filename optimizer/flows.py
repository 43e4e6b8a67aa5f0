"""The plan's power flows, read from a solution vector and made exactly consistent.

Post-processing guarantees what a linear model alone cannot: no battery charges and discharges in the
same step, no simultaneous import and export, and an exact power balance at every step.

Battery netting keeps the state-of-energy path unchanged. A step with charge ``c`` and discharge ``d``
both > 0 stores ``s = eta_c*c - d/eta_d``; it becomes ``(s/eta_c, 0)`` if ``s >= 0`` else ``(0, -s*eta_d)``.
Either way the battery takes ``d*(1/(eta_c*eta_d) - 1)`` resp. ``c*(1 - eta_c*eta_d)`` kW less from the
bus, so nothing downstream moves: the surplus first lowers import, then is exported within the export
cap, then curtails PV. The green objective does not change (the round-trip loss term falls by exactly the
surplus) and cost, throughput and peak cannot rise, so an optimal plan stays optimal. Grid import and
export are then recomputed from the balance as ``max(net, 0)`` and ``max(-net, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from optimizer.bounds import binary_deferrables
from optimizer.data import ModelData, rebound_kw
from optimizer.lp import Layout

TOL = 1e-7


@dataclass
class Flows:
    imp: np.ndarray  # (T,)
    exp: np.ndarray
    pv: np.ndarray  # (P, T)
    ch: np.ndarray  # (B, T)
    dis: np.ndarray
    soe: np.ndarray  # (B, T) kWh at the end of each step
    shed: np.ndarray  # (L, T) 0/1
    dl: np.ndarray  # (D, T) kW
    dl_on: np.ndarray  # (D, T) bool


def from_solution(x: np.ndarray, layout: Layout, d: ModelData) -> Flows:
    S, T = d.structure, d.structure.n_steps

    def fam(name: str, rows: int) -> np.ndarray:
        return np.asarray(x[layout.cols[name]], dtype=float).reshape(rows, T)

    P, B, L, D = S.n_pv, len(S.batteries), len(S.sheds), len(S.defers)
    dl = fam("dl_p", D)
    on = dl > 1e-6
    bi = binary_deferrables(d)
    if bi:
        on[bi] = fam("dl_on", len(bi)) > 0.5
    return Flows(
        imp=fam("imp", 1)[0], exp=fam("exp", 1)[0], pv=fam("pv", P), ch=fam("ch", B), dis=fam("dis", B),
        soe=fam("soe", B), shed=np.round(fam("shed", L)), dl=dl, dl_on=on,
    )  # fmt: skip


def load_kw(d: ModelData, shed: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """Total site load per step: base + interruptible (running, shed, rebound) + deferrable."""
    load = d.rhs_balance.copy() + dl.sum(axis=0)
    for i, r in enumerate(d.structure.sheds):
        load -= r.shed_kw * shed[i]
        load += rebound_kw(r, shed[i], float(d.run0[i]), d.dt)[0]
    return np.asarray(load, dtype=float)


def soe_path(d: ModelData, ch: np.ndarray, dis: np.ndarray) -> np.ndarray:
    eta = np.array(d.structure.batteries).reshape(-1, 2)
    step = d.dt * (eta[:, :1] * ch - dis / eta[:, 1:])
    return np.asarray(d.e0[:, None] + np.cumsum(step, axis=1), dtype=float)


def _net_batteries(d: ModelData, f: Flows, ch: np.ndarray, dis: np.ndarray, pv: np.ndarray) -> list[str]:
    """Remove simultaneous charge and discharge in place (see the module docstring).

    Per battery-step: the SoC-preserving form when the bus can take the surplus there (less import, export
    within the cap, or curtailment); else the bus-preserving form (``ch - dis`` kept, the battery keeps
    the energy it was burning) when the raised SoC path stays within its bounds; else left, with a note.
    """
    eta = np.array(d.structure.batteries).reshape(-1, 2)
    notes, kept = 0, []
    both = np.minimum(ch, dis) > 0
    for t, b in sorted(zip(*np.nonzero(both.T), strict=True)):  # in time order: SoC paths build on earlier steps
        c, x, ec, ed = ch[b, t], dis[b, t], eta[b, 0], eta[b, 1]
        stored = ec * c - x / ed
        c1, x1 = (stored / ec, 0.0) if stored >= 0 else (0.0, -stored * ed)
        surplus = (c - x) - (c1 - x1)
        net = load_kw(d, f.shed, f.dl)[t] - pv[:, t].sum() + (ch[:, t] - dis[:, t]).sum()
        room = max(net, 0.0) + d.exp_ub[t] + min(net, 0.0) + pv[:, t].sum()
        if surplus <= room + 1e-9:
            ch[b, t], dis[b, t] = c1, x1
            notes += 1
            continue
        c2, x2 = max(c - x, 0.0), max(x - c, 0.0)
        rise = d.dt * ((ec * c2 - x2 / ed) - stored)
        path = soe_path(d, ch, dis)[b, t:] + rise
        if path.max() <= d.e_hi[b] + 1e-9:
            ch[b, t], dis[b, t] = c2, x2
            notes += 1
        else:
            kept.append((int(b), int(t)))
    out = [f"netted simultaneous charge/discharge in {notes} battery-steps"] if notes else []
    if kept:
        out.append(f"could not net charge/discharge at (battery, step) {kept[:5]}")
    return out


def clean(f: Flows, d: ModelData) -> tuple[Flows, list[str]]:
    """Clip solver noise, net batteries and grid, rebuild SoC from the dynamics; returns notes."""
    notes: list[str] = []
    pv = np.clip(f.pv, 0.0, d.pv_ub)
    ch = np.clip(f.ch, 0.0, d.pch[:, None])
    dis = np.clip(f.dis, 0.0, d.pdis[:, None])
    dl = np.clip(f.dl, 0.0, d.dl_ub)
    dl = np.where(f.dl_on | (dl > 1e-6), dl, 0.0)
    notes += _net_batteries(d, replace(f, dl=dl), ch, dis, pv)
    net = load_kw(d, f.shed, dl) - pv.sum(axis=0) + (ch - dis).sum(axis=0)
    over = np.maximum(-net - d.exp_ub, 0.0)  # export beyond the cap: curtail PV instead
    if np.any(over > TOL) and pv.shape[0]:
        total = pv.sum(axis=0)
        share = np.divide(np.minimum(over, total), total, out=np.zeros_like(total), where=total > 0)
        pv = pv * (1.0 - share)
        net = load_kw(d, f.shed, dl) - pv.sum(axis=0) + (ch - dis).sum(axis=0)
    left = np.flatnonzero(-net - d.exp_ub > 1e-6)
    if len(left):
        notes.append(f"export above the cap at steps {left.tolist()[:10]}: nothing left to curtail")
    soe = soe_path(d, ch, dis)
    return replace(f, imp=np.maximum(net, 0.0), exp=np.maximum(-net, 0.0), pv=pv, ch=ch, dis=dis, soe=soe,
                   dl=dl), notes  # fmt: skip


def pv_charged(d: ModelData, ch: np.ndarray, imp: np.ndarray) -> np.ndarray:
    """(B, T) charge not attributable to import, attributing import to the lossiest batteries first.

    This is the attribution that maximises green, i.e. the one the model's ``ch_grid`` takes.
    """
    grid = np.zeros_like(ch)
    left = imp.astype(float).copy()
    for b in np.argsort(-d.loss_ch, kind="stable"):
        grid[b] = np.minimum(ch[b], left)
        left -= grid[b]
    return np.asarray(ch - grid, dtype=float)


def green_kwh(d: ModelData, f: Flows) -> float:
    """PV kept on site less the round-trip loss of the PV that went through storage."""
    loss = float((d.loss_ch[:, None] * pv_charged(d, f.ch, f.imp)).sum()) if len(d.loss_ch) else 0.0
    return d.dt * (float(f.pv.sum()) - float(f.exp.sum()) - loss)
