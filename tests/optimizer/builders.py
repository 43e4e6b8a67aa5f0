"""Small hand-made optimizer inputs for tests: hourly steps from 2026-07-15 00:00 Asia/Shanghai."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from optimizer.inputs import BatteryInput, OptimizerInputs, SolverSettings

START = datetime(2026, 7, 15, tzinfo=ZoneInfo("Asia/Shanghai"))
# Exact hand answers: no green tolerance, no battery tie-break cost.
STRICT = SolverSettings(time_limit_s=20, mip_rel_gap=1e-6, green_rel_tol=0.0, green_abs_tol_kwh=1e-6,
                        battery_tiebreak_cny_per_kwh=0.0)  # fmt: skip


def battery(**kw: Any) -> BatteryInput:
    base: dict[str, Any] = dict(id="bess", capacity_kwh=100.0, p_charge_max_kw=50.0, p_discharge_max_kw=50.0,
                                eta_charge=1.0, eta_discharge=1.0, soc_min_pct=10.0, soc_max_pct=90.0,
                                soc_init_pct=10.0, soc_terminal_pct=10.0)  # fmt: skip
    base.update(kw)
    return BatteryInput(**base)


def inputs(
    load: Sequence[float], price: Sequence[float], *, step_s: int = 3600, export_price: float | Sequence[float] = 0.0,
    import_cap: float = 1e4, export_cap: float = 0.0, settings: SolverSettings = STRICT, **kw: Any,
) -> OptimizerInputs:  # fmt: skip
    n = len(load)
    xp = [export_price] * n if isinstance(export_price, float | int) else list(export_price)
    return OptimizerInputs(
        start=START, step_s=step_s, n_steps=n, base_load_kw=list(load), import_price_cny_per_kwh=list(price),
        export_price_cny_per_kwh=xp, import_cap_kw=[import_cap] * n, export_cap_kw=[export_cap] * n,
        carbon_kg_per_kwh=[0.5366] * n, settings=settings, **kw,
    )  # fmt: skip
