"""Name the constraint family that cannot be met: re-solve with slack variables and report non-zero ones.

Every model carries three slack families with upper bound 0 (so a normal solve ignores them): extra
supply in the power balance (``import_cap``: load the import cap, PV and storage cannot cover), a
shortfall on each battery's terminal SoC (``battery_terminal_soc``) and on each deferrable load's energy
(``deferrable_energy``). The diagnosis frees them, minimises their total in kWh on the same live HiGHS
instance, reports the non-zero ones, and restores the instance. If even the slacks cannot restore
feasibility, the conflict lies in device rules themselves and is reported as ``unexplained``.
"""

from __future__ import annotations

import highspy
import numpy as np

from optimizer.bounds import diagnosis_slacks
from optimizer.data import ModelData
from optimizer.inputs import OptimizerInputs
from optimizer.lp import Layout, Vectors, push_data
from optimizer.solve import run_stage

SLACK_TOL = 1e-4


def diagnose(
    h: highspy.Highs, layout: Layout, v: Vectors, d: ModelData, inputs: OptimizerInputs, time_limit_s: float
) -> dict[str, list[str]]:
    """Families with non-zero slack and what each slack says, e.g. ``{"import_cap": ["step 17: ..."]}``."""
    n = layout.n_col
    cols = np.arange(n, dtype=np.int32)
    upper, cost = v.col_upper.copy(), np.zeros(n)
    for name, (_family, _ub) in diagnosis_slacks(d).items():
        idx = layout.cols[name]
        upper[idx] = highspy.kHighsInf
        cost[idx] = d.dt if name == "imp_excess" else 1.0
    h.changeColsBounds(n, cols, v.col_lower, upper)
    h.changeColsCost(n, cols, cost)
    h.changeObjectiveOffset(0.0)
    h.changeRowBounds(int(layout.rows["green_floor"][0]), -highspy.kHighsInf, highspy.kHighsInf)
    try:
        r = run_stage(h, time_limit_s, 1e-4, mip=layout.is_mip())
    finally:
        push_data(h, layout, v)
    if r.x is None:
        return {"unexplained": [f"infeasible even with every slack free ({r.model_status}): device rules "
                                "(windows, minimum run or shed times) conflict with each other"]}  # fmt: skip
    x = r.x
    out: dict[str, list[str]] = {}
    for t, val in enumerate(x[layout.cols["imp_excess"]]):
        if val > SLACK_TOL:
            out.setdefault("import_cap", []).append(
                f"step {t}: {val:.1f} kW of load above what import cap {d.imp_ub[t]:.1f} kW, PV and storage cover"
            )
    for b, val in enumerate(x[layout.cols["soe_short"]]):
        if val > SLACK_TOL:
            bat = inputs.batteries[b]
            out.setdefault("battery_terminal_soc", []).append(
                f"{bat.id}: {val:.1f} kWh short of soc_terminal_pct {bat.soc_terminal_pct}"
            )
    for i, val in enumerate(x[layout.cols["dl_short"]]):
        if val > SLACK_TOL:
            dl = inputs.deferrable_loads[i]
            out.setdefault("deferrable_energy", []).append(
                f"{dl.id}: {val:.1f} of {dl.energy_kwh:.1f} kWh cannot be delivered in steps "
                f"[{dl.window_start}, {dl.window_end})"
            )
    return out or {"unexplained": ["the slack re-solve found no shortfall (numerical trouble?)"]}
