"""Rule-respecting rounding of a relaxed solution: a MIP incumbent without branching.

Why: on these models the LP relaxation's cost is within a fraction of a percent of the MIP optimum, and
HiGHS spends most of a MIP solve looking for a first incumbent, not proving the bound. Rounding the
on/off decisions so that every integer-only rule still holds, then re-solving the LP with them fixed,
gives an incumbent whose gap to the relaxation can be measured directly.

Interruptible loads: a dynamic programme over the shed state machine (shed for ``a`` steps, running for
``r`` steps since the last restore, starts used today) picks the 0/1 schedule closest to the relaxed one
that respects maximum and minimum shed length, the gap between sheds, sheds per local day and the step
bounds. Deferrable loads: the pattern ``u > 0.5`` (else ``u > 0``) is kept if its runs start where a
run fits, last their minimum run, and allow the energy between ``p_min`` and ``p_max``; otherwise that
load is left to the MIP.
"""

from __future__ import annotations

import functools

import numpy as np

from optimizer.bounds import binary_deferrables
from optimizer.data import ModelData, ShedRule

NEG = -1e18


def _states(r: ShedRule, n_max: int) -> tuple[list[tuple[str, int, int]], dict[tuple[str, int, int], int]]:
    D, G = max(r.max_steps, 1), max(r.gap_steps, 1)
    states = [("shed", a, n) for n in range(n_max + 1) for a in range(1, D + 1)]
    states += [("ongoing", 0, n) for n in range(n_max + 1)]
    states += [("run", k, n) for n in range(n_max + 1) for k in range(1, G + 1)]
    return states, {s: i for i, s in enumerate(states)}


def _preds(r: ShedRule, state: tuple[str, int, int], n_max: int, new_day: bool) -> list[tuple[str, int, int]]:
    """States at t-1 that may lead to ``state`` at t (the day's start count resets on a new day)."""
    D, U, G = max(r.max_steps, 1), max(r.min_steps, 1), max(r.gap_steps, 1)
    kind, a, n = state
    same = range(n_max + 1) if new_day else [n]
    if kind == "shed" and a == 1:
        before = range(n_max + 1) if new_day else ([n - 1] if n >= 1 else [])
        return [("run", G, m) for m in before] if (n == 1 or not new_day) else []
    if kind == "shed":
        return [("shed", a - 1, m) for m in same] if not new_day or n == 0 else []
    if kind == "ongoing":
        return [("ongoing", 0, m) for m in same] if not new_day or n == 0 else []
    if new_day and n != 0:
        return []
    if a == 1:
        out = [("shed", k, m) for m in same for k in range(U, D + 1)] + [("ongoing", 0, m) for m in same]
        return out + ([("run", 1, m) for m in same] if G == 1 else [])
    return [("run", a - 1, m) for m in same] + ([("run", G, m) for m in same] if a == G else [])


Machine = tuple[dict[tuple[str, int, int], int], np.ndarray, np.ndarray, np.ndarray, dict[bool, np.ndarray]]


@functools.lru_cache(maxsize=64)
def _machine(r: ShedRule, n_max: int) -> Machine:
    """The state machine's tables (a pure function of the rule; cached: rebuilt per call it took about
    half of the rounding's time): state index, shed and ongoing masks, start counts, predecessor tables
    padded with ``S`` (the -inf slot) for an ordinary step and for the first step of a local day."""
    states, index = _states(r, n_max)
    S = len(states)
    is_shed = np.array([k in ("shed", "ongoing") for k, _, _ in states])
    is_ongoing = np.array([k == "ongoing" for k, _, _ in states])
    count = np.array([n for _, _, n in states])
    preds = {}
    for new_day in (False, True):
        rows = [[index[p] for p in _preds(r, s, n_max, new_day)] for s in states]
        width = max(1, max(map(len, rows)))
        preds[new_day] = np.array([row + [S] * (width - len(row)) for row in rows])
    for a in (is_shed, is_ongoing, count, *preds.values()):
        a.setflags(write=False)  # shared between calls
    return index, is_shed, is_ongoing, count, preds


def round_sheds(d: ModelData, i: int, relaxed: np.ndarray) -> np.ndarray | None:
    """The 0/1 schedule of interruptible load ``i`` closest to ``relaxed`` that keeps its rules."""
    r, T = d.structure.sheds[i], d.n_steps
    n_max = int(max(d.day_rhs[i].max(), 0))
    index, is_shed, is_ongoing, count, preds = _machine(r, n_max)
    S = len(index)
    value = np.full(S + 1, NEG)
    value[index[("ongoing", 0, 0)] if d.shed_init[i] > 0 else index[("run", max(r.gap_steps, 1), 0)]] = 0.0
    back = np.zeros((T, S), dtype=np.int64)
    sel = np.arange(S)
    gain = is_shed.astype(float)
    shed_ok, run_ok, maxdur_ok = d.shed_ub[i] > 0.5, d.shed_lb[i] < 0.5, d.maxdur_rhs[i] > 0.5
    for t in range(T):
        new_day = t > 0 and d.day_of_step[t] != d.day_of_step[t - 1]
        p = preds[new_day]
        cand = value[p]
        best = np.argmax(cand, axis=1)
        v = cand[sel, best] + gain * (relaxed[t] - 0.5)
        allowed = np.where(is_shed, shed_ok[t], run_ok[t]) & (count <= d.day_rhs[i, d.day_of_step[t]])
        allowed &= ~is_ongoing | maxdur_ok[t]
        value[:S] = np.where(allowed & (v > NEG / 2), v, NEG)
        back[t] = p[sel, best]
    if value[:S].max() <= NEG / 2:
        return None
    out = np.zeros(T)
    s = int(np.argmax(value[:S]))
    for t in range(T - 1, -1, -1):
        out[t] = float(is_shed[s])
        s = int(back[t, s])
    return out


def _deferrable_ok(d: ModelData, i: int, on: np.ndarray) -> bool:
    rule, T = d.structure.defers[i], d.n_steps
    if (on > d.on_ub[i] + 1e-9).any() or (on < d.on_lb[i] - 1e-9).any():
        return False
    n = int(on.sum())
    energy = float(d.dl_energy[i])
    if n * rule.p_max_kw * d.dt < energy - 1e-9 or n * rule.p_min_kw * d.dt > energy + 1e-9:
        return False
    prev = d.on_init[i]
    for t in range(T):
        if on[t] and not prev:  # a start: it must fit and last its minimum run
            end = t + max(rule.min_run_steps, 1)
            if d.start_ub[i, t] < 0.5 or end > T or not on[t:end].all():
                return False
        prev = on[t]
    return True


def round_integers(d: ModelData, relaxed_shed: np.ndarray, relaxed_on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rounded (shed, dl_on) arrays; a row of NaN marks a device left to the MIP."""
    shed = np.full_like(relaxed_shed, np.nan)
    for i in range(shed.shape[0]):
        got = round_sheds(d, i, relaxed_shed[i])
        if got is not None:
            shed[i] = got
    on = np.full_like(relaxed_on, np.nan)
    for j, i in enumerate(binary_deferrables(d)):
        for pattern in (relaxed_on[j] > 0.5, relaxed_on[j] > 1e-6):
            if _deferrable_ok(d, i, pattern.astype(float)):
                on[j] = pattern
                break
    return shed, on
