"""From the Pyomo model to HiGHS: the measured-fastest route, and the map that lets data change in place.

Route: ``pyomo.repn.plugins.standard_form`` compiles the model to a CSC matrix (mixed form: one row per
constraint, equalities kept) and ``highspy.Highs.passModel`` takes the arrays. On the bench this is
several times faster than loading through a Pyomo persistent solver (see bench/optimizer_bench.py).
Pyomo's cyclic garbage collector is paused while the model is built: the build allocates ~10 objects
per matrix entry and the collector otherwise costs about two thirds of the build time.

:class:`Layout` remembers, for every variable and constraint family, its column/row positions, so the
arrays of :mod:`optimizer.bounds` can be scattered into the live instance (``changeColsBounds``,
``changeRowsBounds``, ``changeColsCost``) and window memberships changed with ``changeCoeff``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from optimizer.bounds import column_bounds, cost_coefs, cost_offset, green_coefs, row_bounds
from optimizer.data import BIG, ModelData, Structure
from optimizer.model import build_model

INTEGER_FAMILIES = ("shed", "dl_on")
Entries = dict[tuple[int, int], float]


@dataclass
class Vectors:
    """Everything HiGHS needs besides the matrix, in column/row order."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    cost: np.ndarray
    cost_offset: float
    green: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    entries: Entries  # data-dependent matrix entries (window memberships)


@dataclass
class Layout:
    structure: Structure
    n_col: int
    n_row: int
    cols: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    integrality: np.ndarray
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray
    entries: Entries = field(default_factory=dict)  # the memberships now in the matrix

    def is_mip(self) -> bool:
        return bool(self.integrality.any())


def build_and_compile(d: ModelData) -> tuple[pyo.ConcreteModel, Layout, float, float]:
    """Build the Pyomo model and compile it; returns (model, layout, build seconds, compile seconds)."""
    t0 = time.perf_counter()
    with PauseGC():
        m = build_model(d)
    t1 = time.perf_counter()
    families = list(column_bounds(d))
    order = [v for name in families for v in m.component(name).values()]
    m.obj_cost.activate()
    repn = LinearStandardFormCompiler().write(m, mixed_form=True, set_sense=None, column_order=order)
    m.obj_cost.deactivate()
    layout = _layout(m, d, repn, families)
    return m, layout, t1 - t0, time.perf_counter() - t1


def _blocks(sizes: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    at = 0
    for name, n in sizes:
        out[name] = np.arange(at, at + n, dtype=np.int32)
        at += int(n)
    return out


def _layout(m: pyo.ConcreteModel, d: ModelData, repn: object, families: list[str]) -> Layout:
    """Positions of each family: columns follow ``families`` (the compiler's column order), rows follow
    the declaration order; both are checked against the compiled model."""
    columns, rows_ = repn.columns, repn.rows  # type: ignore[attr-defined]
    comps = [(name, m.component(name)) for name in families]
    cols = _blocks([(name, len(c)) for name, c in comps])
    cons = list(m.component_objects(pyo.Constraint, active=True, descend_into=False))
    rows = _blocks([(c.local_name, len(c)) for c in cons])
    ok = len(columns) == sum(len(c) for _, c in comps) and len(rows_) == sum(len(c) for c in cons)
    ok = ok and all(columns[cols[n][0]] is c[0] for n, c in comps if len(c))
    ok = ok and all(rows_[rows[c.local_name][0]][0] is c[0] and rows_[rows[c.local_name][0]][1] in (0, 1, -1)
                    for c in cons if len(c))  # fmt: skip
    if not ok:  # pragma: no cover - guards the assumption that every family keeps its place
        raise RuntimeError("compiled model does not follow the declared family order")
    missing = set(row_bounds(d)) - set(rows)
    if missing:  # pragma: no cover
        raise RuntimeError(f"row families without constraints: {sorted(missing)}")
    n_col, n_row = len(columns), len(rows_)
    integrality = np.zeros(n_col, dtype=np.uint8)
    for name in INTEGER_FAMILIES:
        integrality[cols[name]] = 1
    A = repn.A  # type: ignore[attr-defined]
    layout = Layout(
        structure=d.structure, n_col=n_col, n_row=n_row, cols=cols, rows=rows, integrality=integrality,
        a_start=A.indptr.astype(np.int32), a_index=A.indices.astype(np.int32), a_value=A.data.astype(float),
    )  # fmt: skip
    layout.entries = membership_entries(layout, d)
    return layout


def membership_entries(layout: Layout, d: ModelData) -> Entries:
    """Matrix entries that depend on data: which steps fall in each local day and each DR window."""
    S = d.structure
    out: Entries = {}
    if S.sheds:
        day_rows = np.stack([layout.rows[f"shed_day_{i}"][d.day_of_step] for i in range(len(S.sheds))])
        out = dict.fromkeys(zip(day_rows.ravel().tolist(), layout.cols["shed_start"].tolist(), strict=True), 1.0)
    imp = layout.cols["imp"]
    for e, row in enumerate(layout.rows["dr_red"].tolist()):
        out.update(dict.fromkeys(((row, c) for c in imp[d.red_mask[e]].tolist()), d.dt))
    return out


def _inf(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.where(a >= BIG, highspy.kHighsInf, np.where(a <= -BIG, -highspy.kHighsInf, a))


def vectors(layout: Layout, d: ModelData, green_floor: float | None = None) -> Vectors:
    """Scatter the family arrays of ``d`` into column/row order."""
    n, r = layout.n_col, layout.n_row
    cl, cu, cost, green = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for name, (lo, hi) in column_bounds(d).items():
        idx = layout.cols[name]
        cl[idx], cu[idx] = lo, hi
    for name, c in cost_coefs(d).items():
        cost[layout.cols[name]] = c
    for name, g in green_coefs(d).items():
        green[layout.cols[name]] = g
    rl, ru = np.zeros(r), np.zeros(r)
    for name, (lo, hi) in row_bounds(d, green_floor).items():
        idx = layout.rows[name]
        rl[idx], ru[idx] = lo, hi
    return Vectors(
        col_lower=_inf(cl), col_upper=_inf(cu), cost=cost, cost_offset=cost_offset(d), green=green,
        row_lower=_inf(rl), row_upper=_inf(ru), entries=membership_entries(layout, d),
    )  # fmt: skip


def new_highs(layout: Layout, v: Vectors) -> highspy.Highs:
    """A silent HiGHS instance holding the model (objective: cost)."""
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.silent()
    status = h.passModel(
        layout.n_col, layout.n_row, len(layout.a_value), int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize), v.cost_offset, v.cost, v.col_lower, v.col_upper, v.row_lower,
        v.row_upper, layout.a_start, layout.a_index, layout.a_value, layout.integrality,
    )  # fmt: skip
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the model")
    return h


def push_data(h: highspy.Highs, layout: Layout, v: Vectors) -> None:
    """Replace bounds, costs and memberships in a live instance (same structure)."""
    cols = np.arange(layout.n_col, dtype=np.int32)
    rows = np.arange(layout.n_row, dtype=np.int32)
    h.changeColsBounds(layout.n_col, cols, v.col_lower, v.col_upper)
    h.changeColsCost(layout.n_col, cols, v.cost)
    h.changeObjectiveOffset(v.cost_offset)
    h.changeRowsBounds(layout.n_row, rows, v.row_lower, v.row_upper)  # type: ignore[attr-defined]
    old, new = layout.entries, v.entries
    for key in old.keys() - new.keys():
        h.changeCoeff(key[0], key[1], 0.0)
    for key, value in new.items():
        if old.get(key) != value:
            h.changeCoeff(key[0], key[1], value)
    layout.entries = dict(new)
