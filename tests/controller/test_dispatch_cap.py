"""The import cap before everything else: a DR cap with PV held back, and loads that restored themselves."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from controller.cycle import CycleSettings
from controller.devices import DeviceSet
from controller.rules import Targets, dispatch
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.writer import SetpointWriter
from drivers.capabilities import CommandOutcome, LoadReading
from parkctl.clock import SimClock
from tests.controller.test_rules import NONE as NONE_PREV
from tests.controller.test_rules import SITE, TS, snap


def test_a_capped_fleet_still_discharges_what_keeps_the_import_under_the_cap() -> None:
    # PV at its caps (so "PV first" would forbid discharge), import 900 against a 600 kW cap in force
    s = snap(900, (100, 50), bat_kw=0.0)
    previous = Setpoints(pv_limit_kw={"pv1": 100, "pv2": 50}, battery_p_kw={"b1": 0.0},
                         load_shed={"big": False, "small": False})  # fmt: skip
    out = dispatch(s, previous, SITE, Targets(grid_kw=400, import_cap_kw=600))
    # load 1050 - pv 150 = 900 kW to cover; the ceiling is 600 - 100 (margin) = 500: discharge >= 400
    assert out.battery_p_kw["b1"] == pytest.approx(400)
    # with no cap pressure the same fleet charges to probe for sun, as before
    relaxed = dispatch(snap(100, (100, 50)), previous, SITE, Targets(grid_kw=100, import_cap_kw=1000))
    assert relaxed.battery_p_kw["b1"] < 0


def test_a_load_told_to_stay_shed_that_runs_is_not_counted_on_to_drop() -> None:
    # 'big' was shed earlier but runs again (it restored itself): the battery must cover its 300 kW
    s = snap(700, (0, 0), loads=(300, 100))
    previous = Setpoints(pv_limit_kw={"pv1": None, "pv2": None}, battery_p_kw={"b1": 0.0},
                         load_shed={"big": True, "small": False})  # fmt: skip
    out = dispatch(s, previous, SITE, Targets(grid_kw=100, import_cap_kw=1000))
    assert out.battery_p_kw["b1"] == pytest.approx(500)  # not 200, as if big were about to go
    assert out.load_shed["big"] is False  # believed restored; the plan did not ask for it


class _Load:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_load(self) -> LoadReading:
        raise NotImplementedError

    async def shed(self) -> CommandOutcome:
        self.calls.append("shed")
        return CommandOutcome(acked=True, accepted=True, reason="")

    async def restore(self) -> CommandOutcome:
        self.calls.append("restore")
        return CommandOutcome(acked=True, accepted=False, reason="not shed")


async def test_the_writer_believes_a_load_that_restored_itself_after_a_cycle() -> None:
    clock = SimClock(TS)
    load = _Load()
    devices = DeviceSet(meter=None, loads={"big": load})  # type: ignore[dict-item]
    writer = SetpointWriter(devices, clock, CycleSettings(period_s=15), Counter())
    await writer.write(Setpoints(load_shed={"big": True}), [])
    assert writer.commanded.load_shed["big"] is True
    fresh = {"big": LoadReading(TS + timedelta(seconds=5), 300, True)}
    writer.reconcile_loads(Snapshot(ts=TS, meter=None, loads=fresh))
    assert writer.commanded.load_shed["big"] is True  # within the grace: the device may not have acted yet
    later = {"big": LoadReading(TS + timedelta(seconds=15), 300, True)}
    writer.reconcile_loads(Snapshot(ts=TS, meter=None, loads=later))
    assert writer.commanded.load_shed["big"] is False
    await writer.write(Setpoints(load_shed={"big": False}), [])
    assert load.calls == ["shed"]  # no restore sent to a load that is already running


def test_a_cap_of_zero_never_makes_the_park_export() -> None:
    # a zero cap (a broken plan, or an event asking for more than the park has) with PV held back:
    # the battery covers the load down to the import target, and never past it into export
    s = snap(900, (100, 50), bat_kw=0.0)
    previous = Setpoints(pv_limit_kw={"pv1": 100, "pv2": 50}, battery_p_kw={"b1": 0.0},
                         load_shed={"big": False, "small": False})  # fmt: skip
    out = dispatch(s, previous, SITE, Targets(grid_kw=100, import_cap_kw=0.0))
    load_after = 1050 - sum(300 if out.load_shed[k] and k == "big" else 100 if out.load_shed[k] else 0
                            for k in out.load_shed)  # fmt: skip
    grid_after = load_after - 150 - out.battery_p_kw["b1"]
    assert grid_after >= SITE.rules.target_import_kw - 1e-9


def test_pv_is_allowed_against_what_a_filling_battery_still_takes_at_the_cycle_end() -> None:
    from controller.rules import sustained_charge_kw
    from controller.settings import BatteryLimits
    from drivers.capabilities import BatteryReading

    limits = BatteryLimits(soc_min_pct=10, soc_max_pct=95)
    near_full = BatteryReading(TS, 0.0, 93.0, 4000.0, 800.0, 2000.0)  # tapering: takes 800 kW now
    # 60 s at 800 kW fills 0.33 % of the 2 % left: the taper leaves 800 * (1 - 0.333/2) = 667 kW
    assert sustained_charge_kw(near_full, -800.0, limits, 60.0) == pytest.approx(-666.67, abs=0.01)
    assert sustained_charge_kw(near_full, -800.0, limits, 1.0) == pytest.approx(-797.8, abs=0.1)  # a 1 s cycle
    assert sustained_charge_kw(near_full, -300.0, limits, 60.0) == -300.0  # well inside what it can take
    assert sustained_charge_kw(near_full, 500.0, limits, 60.0) == 500.0  # discharge is not touched
    full = BatteryReading(TS, 0.0, 95.0, 4000.0, 0.0, 2000.0)
    assert sustained_charge_kw(full, -100.0, limits, 60.0) == 0.0


def test_a_filling_battery_near_full_gets_less_pv_allowed_so_nothing_is_exported() -> None:
    from dataclasses import replace

    from controller.settings import BatteryLimits
    from drivers.capabilities import BatteryReading

    site = replace(SITE, batteries={"b1": BatteryLimits(soc_min_pct=10, soc_max_pct=90)}, cycle_s=60.0)
    s = snap(-100, (600, 400), bat_kw=-300.0, soc=89.5)  # load -100 + 1000 - 300 = 600: a PV surplus
    s = Snapshot(ts=s.ts, meter=s.meter, pv=s.pv, loads=s.loads,
                 batteries={"b1": BatteryReading(TS, -300.0, 89.5, 1000.0, 300.0, 500.0)})  # fmt: skip
    out = dispatch(s, NONE_PREV, site, Targets(grid_kw=100, import_cap_kw=1000))
    charge = -out.battery_p_kw["b1"]
    # 60 s at 300 kW fills the 0.5 % left: by the end the battery takes nothing, so PV may cover the load
    # (less the export margin) but not the charge it is still asked for
    allowed = sum(v for v in out.pv_limit_kw.values() if v is not None)
    assert charge > 0 and allowed == pytest.approx(600 - 50)
