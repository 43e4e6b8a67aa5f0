"""Sequential fixing: round one device's on/off schedule at a time, re-solving the relaxation in between.

Why: rounding every interruptible load at once (:func:`optimizer.rounding.round_integers`) ignores that
the loads share one peak and one battery; on the night re-plans of the summer replay its incumbent was
2-13 % above the relaxation. Fixing the largest load first and letting the relaxation re-balance the
others before each next rounding gave 1-3 % (k=0: 0.97 % against 0.87 % for HiGHS's best incumbent
after 7 s), for one warm LP per device instead of a branch and bound that did not find its first
incumbent within a second.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optimizer.bounds import binary_deferrables
from optimizer.data import ModelData
from optimizer.lp import Layout
from optimizer.rounding import round_integers, round_sheds

# (column indices, values) -> the relaxation's solution with those columns fixed, or None if infeasible
Resolve = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


def fix_sequentially(
    d: ModelData, layout: Layout, x: np.ndarray, resolve: Resolve
) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer values (``shed`` then ``dl_on`` columns, in layout order) and the LP solution with all of
    them fixed; None when a rounding or a re-solve fails."""
    T = d.n_steps
    shed_cols, on_cols = layout.cols["shed"], layout.cols["dl_on"]
    idx = np.concatenate([shed_cols, on_cols]).astype(np.int32)
    vals = np.full(len(idx), np.nan)
    order = sorted(range(len(d.structure.sheds)), key=lambda i: -d.structure.sheds[i].shed_kw)
    for i in order:
        schedule = round_sheds(d, i, x[shed_cols[i * T : (i + 1) * T]])
        if schedule is None:
            return None
        vals[i * T : (i + 1) * T] = schedule
        known = ~np.isnan(vals)
        got = resolve(idx[known], vals[known])
        if got is None:
            return None
        x = got
    if binary_deferrables(d):
        _, on = round_integers(d, np.zeros((0, T)), x[on_cols].reshape(-1, T))
        if np.isnan(on).any():
            return None
        vals[len(shed_cols) :] = on.ravel()
        got = resolve(idx, vals)
        if got is None:
            return None
        x = got
    return vals, x
