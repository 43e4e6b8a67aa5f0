"""Inputs from a Scenario plus forecasts, the oracle flag, and the files a command writes."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import ValidationError

from optimizer.command import inputs_from_scenario, optimize_scenario, tariff_series, write_plan
from optimizer.inputs import SolverSettings
from optimizer.persistent import RollingOptimizer, oracle
from sim.scenario import load_scenario
from tests.optimizer.checks import violations

SC = load_scenario("chenzhou-summer-weekday")
N, STEP = 16, 900  # 15:00-19:00


def _forecasts(n: int = N) -> tuple[dict[str, np.ndarray], np.ndarray]:
    sun = np.linspace(0.6, 0.0, n)
    return {p.id: p.ac_kw * sun for p in SC.pv}, np.full(n, 3800.0)


def _start() -> datetime:
    return SC.local_start + timedelta(hours=15)


def test_tariff_series_uses_the_scenario_tariff() -> None:
    prices, periods = tariff_series(SC.tariff, _start(), STEP, N)
    assert periods[:4] == ["flat"] * 4 and periods[4:] == ["peak"] * 12
    assert prices[0] == pytest.approx(0.65) and prices[-1] == pytest.approx(0.65 * 1.6)
    mixed, _ = tariff_series(SC.tariff, SC.local_start + timedelta(minutes=45), 1800, 1)  # 00:45-01:15
    assert mixed[0] == pytest.approx(0.65 * (15 + 15 * 0.47) / 30)


def test_scenario_inputs_map_devices() -> None:
    pv, base = _forecasts()
    inp = inputs_from_scenario(SC, pv, base, STEP, _start(), month_peak_so_far_kw=4000.0)
    assert [b.id for b in inp.batteries] == ["bess-1", "bess-2"]
    assert inp.batteries[0].soc_terminal_pct == inp.batteries[0].soc_init_pct == 30
    furnace = next(ld for ld in inp.interruptible_loads if ld.id == "furnace-1")
    assert (furnace.running_kw, furnace.max_shed_s, furnace.min_shed_s, furnace.min_gap_s) == (800, 1800, 900, 1800)
    assert inp.export_cap_kw == [0.0] * N and inp.demand_charge_cny_per_kw == 32
    assert inp.start.tzinfo is not None and inp.start.utcoffset() == timedelta(hours=8)


def test_missing_forecasts_are_named() -> None:
    pv, base = _forecasts()
    del pv["pv-carport"]
    with pytest.raises(ValueError, match="pv-carport"):
        inputs_from_scenario(SC, pv, base, STEP, _start())
    pv, base = _forecasts()
    base[5] = math.nan
    with pytest.raises(ValidationError) as exc:
        inputs_from_scenario(SC, pv, base, STEP, _start())
    assert [tuple(e["loc"]) for e in exc.value.errors()] == [("base_load_kw", 5)]


def test_optimize_scenario_and_write(tmp_path: Path) -> None:
    pv, base = _forecasts()
    plan = optimize_scenario(SC, pv, base, STEP, _start(), month_peak_so_far_kw=4000.0,
                             settings=SolverSettings(time_limit_s=20))  # fmt: skip
    assert plan.status in ("optimal", "time_limit") and not plan.fallback
    assert violations(plan) == []
    pj, pc = write_plan(plan, tmp_path)
    assert pj.exists() and pc.exists()
    ro = RollingOptimizer()
    utc = _start().astimezone(ZoneInfo("UTC"))  # any offset: inputs are expressed in site time
    warm = optimize_scenario(SC, pv, base, STEP, utc, optimizer=ro, month_peak_so_far_kw=4000.0)
    assert warm.inputs.start == _start() and warm.inputs.start.utcoffset() == timedelta(hours=8)


def test_oracle_is_the_same_model_on_realised_data() -> None:
    pv, base = _forecasts(8)
    inp = inputs_from_scenario(SC, pv, base, STEP, _start(), oracle=True)
    assert inp.mode == "oracle"
    plan = oracle(inputs_from_scenario(SC, pv, base, STEP, _start()))
    assert plan.inputs.mode == "oracle" and plan.status == "optimal"
