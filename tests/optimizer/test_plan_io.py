"""plan.json carries its inputs: rebuilding from it gives the same problem and the same optimum."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from optimizer.inputs import DeferrableInput, DrEvent, InterruptibleInput, PvInput
from optimizer.persistent import optimize
from optimizer.plan import read_plan, write_plan
from tests.optimizer.builders import battery, inputs


def _inputs() -> object:
    return inputs(
        [40.0, 40.0, 80.0, 60.0, 20.0, 40.0], [0.3, 0.3, 1.2, 1.2, 0.6, 0.6], export_price=0.1, export_cap=20.0,
        pv=[PvInput(id="pv", available_kw=[0.0, 60.0, 90.0, 30.0, 0.0, 0.0])], batteries=[battery()],
        interruptible_loads=[InterruptibleInput(id="il", running_kw=20, max_shed_s=3600, max_sheds_per_day=1,
                                                rebound_factor=0.5, shed_cost_cny_per_kwh=0.2)],
        deferrable_loads=[DeferrableInput(id="dl", energy_kwh=20, p_min_kw=5, p_max_kw=10, min_run_s=7200,
                                          window_start=0, window_end=6)],
        dr_events=[DrEvent(id="cap", kind="import_cap", first_step=2, end_step=4, cap_kw=50.0,
                           penalty_cny_per_kwh=2.0)],
        demand_charge_cny_per_kw=5.0, month_peak_so_far_kw=40.0, tou_period=["valley"] * 2 + ["peak"] * 4,
    )  # fmt: skip


def test_plan_json_round_trip_rebuilds_the_same_optimum(tmp_path: Path) -> None:
    plan = optimize(_inputs())  # type: ignore[arg-type]
    pj, _ = write_plan(plan, tmp_path)
    again = read_plan(pj)
    assert again == plan
    rebuilt = optimize(again.inputs)
    assert rebuilt.objective.cost_cny == pytest.approx(plan.objective.cost_cny, abs=1e-6)
    assert rebuilt.objective.green_kwh == pytest.approx(plan.objective.green_kwh, abs=1e-6)
    raw = json.loads(pj.read_text())
    assert {"inputs", "objective", "status", "mip_gap", "timings", "green_floor_kwh"} <= raw.keys()
    assert raw["inputs"]["settings"]["green_rel_tol"] == 0.0  # the tolerance that defines the problem


def test_plan_csv_has_a_row_per_step(tmp_path: Path) -> None:
    plan = optimize(_inputs())  # type: ignore[arg-type]
    _, pc = write_plan(plan, tmp_path / "out")
    rows = list(csv.DictReader(pc.open()))
    assert len(rows) == 6
    assert {"bess.p_kw", "bess.soc_pct", "pv.limit_kw", "il.on", "dl.p_kw", "grid_import_kw"} <= rows[0].keys()
    assert rows[2]["period"] == "peak" and rows[0]["start"] == "2026-07-15T00:00:00+08:00"
