"""The DR cap in force holds in the dispatch guards: rules mode, mpc mode, and mpc with a plan unaware of it."""

from __future__ import annotations

from datetime import datetime

import pytest

from controller.mpc import ActivePlan, decide_mpc
from controller.rules import SiteModel, decide_rules
from controller.setpoints import Setpoints
from controller.settings import BatteryLimits, GridLimits, RuleSettings
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, LoadReading, MeterReading
from optimizer.persistent import optimize
from tests.optimizer.builders import START, battery, inputs

TS = START.replace(hour=0, minute=30)
SITE = SiteModel(
    grid=GridLimits(import_cap_kw=1000, export_cap_kw=0),
    batteries={"bess": BatteryLimits(soc_min_pct=10, soc_max_pct=90)},
    pv_rated_kw={},
    load_nominal_kw={"big": 300, "small": 100},
    rules=RuleSettings(target_import_kw=100, export_margin_kw=50, import_margin_kw=100, restore_headroom_kw=100),
)
PREVIOUS = Setpoints(battery_p_kw={"bess": 0.0}, load_shed={"big": False, "small": False})


def snap(ts: datetime = TS) -> Snapshot:
    """600 kW import, battery at its floor (it cannot help), both loads running."""
    return Snapshot(
        ts=ts, meter=MeterReading(ts, 600.0),
        batteries={"bess": BatteryReading(ts, 0.0, 10.0, 100, 50, 50)},
        loads={"big": LoadReading(ts, 300, True), "small": LoadReading(ts, 100, True)},
    )  # fmt: skip


def dr_cap(ts: datetime) -> float | None:
    return 400.0 if TS <= ts < TS.replace(hour=1) else None


def test_rules_hold_the_dr_cap() -> None:
    assert not any(decide_rules(snap(), PREVIOUS, SITE).load_shed.values())  # 600 < 1000 - 100
    out = decide_rules(snap(), PREVIOUS, SITE, dr_cap)
    assert out.load_shed == {"big": True, "small": False}  # 600 - 300 = 300 <= 400 - 100
    outside = decide_rules(snap(TS.replace(hour=1)), PREVIOUS, SITE, dr_cap)
    assert not any(outside.load_shed.values())


def test_mpc_without_a_plan_holds_the_dr_cap() -> None:
    out = decide_mpc(snap(), PREVIOUS, SITE, None, dr_cap)
    assert out.load_shed["big"] and out.reason == "no valid plan: rules"


def test_mpc_holds_the_dr_cap_even_when_the_plan_does_not_know_it() -> None:
    plan = optimize(inputs([600.0, 600.0], [1.0, 1.0], batteries=[battery(id="bess")]))
    assert not plan.inputs.dr_events
    active = ActivePlan(plan=plan, created_at=START)
    assert not any(decide_mpc(snap(), PREVIOUS, SITE, active).load_shed.values())
    out = decide_mpc(snap(), PREVIOUS, SITE, active, dr_cap)
    assert out.load_shed["big"] and out.reason == "plan step 0"
    assert out.battery_p_kw["bess"] == pytest.approx(0.0)
