"""Warm starts for a horizon that moved on by whole steps: the previous answer, shifted.

Every time-indexed family is laid out ``device * T + t`` (see :mod:`optimizer.lp`), so moving on by
``k`` steps is a shift of each ``(device, T)`` block: step ``t`` takes what step ``t + k`` had, and the
``k`` new steps at the end start as "nothing decided" (columns at their lower bound, row slacks basic).
The simplex basis is then made consistent (exactly one basic variable per row) by switching some of the
new rows' slacks; HiGHS repairs whatever rank trouble remains. A basis left unshifted is worse than
none: each column would start from the status of the step before it.
"""

from __future__ import annotations

from datetime import datetime

import highspy
import numpy as np

from optimizer.lp import INTEGER_FAMILIES, Layout

TIME_COLS = ("imp", "exp", "imp_excess", "pv", "ch", "dis", "ch_grid", "soe", "shed", "shed_start", "shed_end",
             "rb_run", "rb_rel", "dl_p", "dl_on", "dl_start", "cap_short")  # fmt: skip
TIME_ROWS = ("balance", "soe_dyn", "grid_charge", "grid_to_storage", "peak_def", "shed_link", "dr_cap")
TIME_ROW_PREFIXES = ("shed_maxdur_", "shed_minup_", "shed_mingap_", "rb_", "dl_pmax_", "dl_pmin_", "dl_link_",
                     "dl_minrun_")  # fmt: skip
LOWER, BASIC, UPPER = highspy.HighsBasisStatus.kLower, highspy.HighsBasisStatus.kBasic, highspy.HighsBasisStatus.kUpper


def steps_moved(before: datetime | None, now: datetime, step_s: int, n_steps: int) -> int | None:
    """Whole steps the horizon start moved forward, or None when it did not move by whole steps."""
    if before is None:
        return None
    moved = (now - before).total_seconds() / step_s
    k = round(moved)
    return k if abs(moved - k) < 1e-6 and 0 <= k < n_steps else None


def _shift(values: np.ndarray, idx: np.ndarray, T: int, k: int, fill: float) -> None:
    block = values[idx].reshape(-1, T)
    values[idx] = np.concatenate([block[:, k:], np.full((block.shape[0], k), fill)], axis=1).ravel()


def shifted_start(layout: Layout, x: np.ndarray, T: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous on/off decisions moved on by ``k`` steps, the last repeated: a partial MIP start."""
    idx, vals = [], []
    for name in INTEGER_FAMILIES:
        cols = layout.cols[name]
        if len(cols):
            old = np.round(x[cols].reshape(-1, T))
            vals.append(np.concatenate([old[:, k:], np.repeat(old[:, -1:], k, axis=1)], axis=1).ravel())
            idx.append(cols)
    if not idx:
        return np.zeros(0, dtype=np.int32), np.zeros(0)
    return np.concatenate(idx).astype(np.int32), np.concatenate(vals)


def shifted_basis(
    basis: highspy.HighsBasis, layout: Layout, T: int, k: int, row_lower: np.ndarray, row_upper: np.ndarray
) -> highspy.HighsBasis:
    """``basis`` moved on by ``k`` steps and made consistent (one basic variable per row)."""
    cols = np.array([int(s) for s in basis.col_status])
    rows = np.array([int(s) for s in basis.row_status])
    if k:
        for name in TIME_COLS:
            if len(layout.cols.get(name, ())):
                _shift(cols, layout.cols[name], T, k, int(LOWER))
        fresh = []
        for name, idx in layout.rows.items():
            if len(idx) and (name in TIME_ROWS or name.startswith(TIME_ROW_PREFIXES)):
                _shift(rows, idx, T, k, int(BASIC))
                fresh.append(idx.reshape(-1, T)[:, T - k :].ravel())
        new = np.concatenate(fresh) if fresh else np.zeros(0, dtype=np.int64)
        extra = int((cols == int(BASIC)).sum() + (rows == int(BASIC)).sum()) - layout.n_row
        if extra > 0:  # too many basic: put new rows' slacks at a finite bound
            pick = new[(rows[new] == int(BASIC)) & (np.isfinite(row_lower[new]) | np.isfinite(row_upper[new]))]
            pick = pick[:extra]
            rows[pick] = np.where(np.isfinite(row_lower[pick]), int(LOWER), int(UPPER))
        elif extra < 0:  # too few: make nonbasic slacks basic, new rows first
            pool = np.concatenate([new[rows[new] != int(BASIC)], np.flatnonzero(rows != int(BASIC))])
            _, first = np.unique(pool, return_index=True)
            rows[pool[np.sort(first)][:-extra]] = int(BASIC)
    status = list(highspy.HighsBasisStatus.__members__.values())
    out = highspy.HighsBasis()
    out.col_status = [status[s] for s in cols.tolist()]
    out.row_status = [status[s] for s in rows.tolist()]
    out.valid = True
    return out
