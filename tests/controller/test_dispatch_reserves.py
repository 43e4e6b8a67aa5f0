"""What moves within a cycle: the dispatch keeps room for it until the next cycle can correct.

A setpoint stands for a whole cycle. In that time a cloud can take PV away (import rises), the load can
fall (export), and a shed load can come back by itself at its maximum shed time, with its rebound.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from controller.rules import LoadReturn, Targets, dispatch, returning_kw
from controller.setpoints import Setpoints
from controller.settings import RuleSettings
from tests.controller.test_rules import NONE, SITE, TS, snap

RULES = SITE.rules.model_dump()


def site(cycle_s: float, **rules: float):  # type: ignore[no-untyped-def]
    return replace(SITE, cycle_s=cycle_s, rules=RuleSettings(**{**RULES, **rules}))


def test_pv_caps_leave_room_for_the_load_to_fall_within_the_cycle() -> None:
    # battery full, PV surplus: PV is capped to the load less the margin, less what the load may lose
    s = snap(-200, (500, 300), soc=90)  # load -200 + 800 = 600
    for cycle_s, share in ((60.0, 0.02), (15.0, 0.005)):
        out = dispatch(s, NONE, site(cycle_s, load_drop_pct_per_min=2.0), Targets(grid_kw=100, import_cap_kw=1000))
        allowed = sum(v for v in out.pv_limit_kw.values() if v is not None)
        assert allowed == pytest.approx(600 * (1 - share) - 50)


def test_charging_from_the_grid_leaves_room_under_the_cap_for_a_cloud() -> None:
    # load 1200 (grid 600 + pv 600), a plan asks for import at the ceiling (1000 - 100 = 900): charge 300
    s = snap(600, (360, 240), loads=(0, 0))
    t = Targets(grid_kw=900, import_cap_kw=1000)
    assert dispatch(s, NONE, site(15.0, pv_drop_pct_per_min=0.0), t).battery_p_kw["b1"] == pytest.approx(-300)
    # 40 %/min over a 15 s cycle: PV may lose 10 % (60 kW) before the next cycle, so charge 240 only
    out = dispatch(s, NONE, site(15.0, pv_drop_pct_per_min=40.0), t)
    assert out.battery_p_kw["b1"] == pytest.approx(-240)
    # a discharge the cap needs is never cut by this reserve
    heavy = dispatch(snap(1100, (360, 240), loads=(0, 0)), NONE, site(15.0, pv_drop_pct_per_min=40.0), t)
    assert heavy.battery_p_kw["b1"] > 0


CHILLER = LoadReturn(max_shed_s=3600.0, rebound_factor=0.4, rebound_s=1800.0)


def test_a_load_back_after_its_full_shed_draws_its_rebound_peak() -> None:
    # 0.4 of an hour's shed energy drawn back over 30 min, decaying from twice the mean: 500 + 800 kW
    assert CHILLER.first_kw(500.0, 3600.0) == pytest.approx(1300.0)
    assert CHILLER.first_kw(500.0, 900.0) == pytest.approx(700.0)
    assert CHILLER.first_kw(500.0, 99999.0) == CHILLER.first_kw(500.0, 3600.0)  # never more than its max shed


def shed_big(since_s: float):  # type: ignore[no-untyped-def]
    s = snap(500, (0, 0), loads=(0, 100))  # 'big' (300 kW nominal) is off; load 100 + 400 from the base
    return replace(s, shed_since={"big": TS - timedelta(seconds=since_s)})


PREV = Setpoints(pv_limit_kw={"pv1": None, "pv2": None}, battery_p_kw={"b1": 0.0},
                 load_shed={"big": True, "small": False})  # fmt: skip


def test_a_load_whose_shed_ends_before_the_next_cycle_is_covered_ahead() -> None:
    sm = replace(site(15.0), load_return={"big": CHILLER})
    t = Targets(grid_kw=500, import_cap_kw=1000, shed={"big": True})  # the plan still wants it shed
    # ten minutes before its maximum shed time: nothing comes back, the battery follows the plan
    early = shed_big(3000)
    assert returning_kw(early, PREV, sm, {"big": True}) == 0.0
    assert dispatch(early, PREV, sm, t).battery_p_kw["b1"] == pytest.approx(0.0)
    # ends within this 15 s cycle: back with 300 * (1 + 2 * 0.4 * 3590 / 1800) = 778.7 kW
    due = shed_big(3590)
    assert returning_kw(due, PREV, sm, {"big": True}) == pytest.approx(300 * (1 + 0.8 * 3590 / 1800))
    out = dispatch(due, PREV, sm, t)
    # 500 kW now + 778.7 back against a 900 kW ceiling: discharge 378.7 ahead of it
    assert out.battery_p_kw["b1"] == pytest.approx(500 + 300 * (1 + 0.8 * 3590 / 1800) - 900)


def test_covering_a_returning_load_never_exports_if_it_stays_off() -> None:
    sm = replace(site(15.0), load_return={"big": CHILLER}, grid=SITE.grid.model_copy(update={"import_cap_kw": 150}))
    s = replace(snap(200, (0, 0), loads=(0, 100)), shed_since={"big": TS - timedelta(seconds=3600)})
    out = dispatch(s, PREV, sm, Targets(grid_kw=100, import_cap_kw=150, shed={"big": True}))
    # the cap would want 200 + 1300... discharged, but without the load the site draws 200 kW: at most
    # 200 - 50 (export margin) may be discharged, less the load's possible fall within the cycle
    assert 0 < out.battery_p_kw["b1"] <= 200 - 50


def test_loads_come_back_one_a_cycle_and_only_when_their_rebound_fits() -> None:
    sm = replace(site(15.0), load_return={"big": CHILLER, "small": CHILLER})
    both = Setpoints(pv_limit_kw={"pv1": None, "pv2": None}, battery_p_kw={"b1": 0.0},
                     load_shed={"big": True, "small": True})  # fmt: skip
    s = replace(snap(200, (0, 0), soc=10, loads=(0, 0)), shed_since={"big": TS - timedelta(seconds=900),
                                                                    "small": TS - timedelta(seconds=900)})
    t = Targets(grid_kw=100, import_cap_kw=1000)  # the plan wants both back; battery empty
    out = dispatch(s, both, sm, t)
    assert out.load_shed == {"big": True, "small": False}  # the smaller first, the other next cycle
    # after 50 min shed the big one draws 300 * (1 + 0.8 * 3000 / 1800) = 700 kW at once: 200 + 700 is over
    # the 900 kW ceiling less the 100 kW restore headroom, so it waits although its nominal 300 would fit
    later = replace(s, loads={"big": s.loads["big"], "small": s.loads["big"]},
                    shed_since={"big": TS - timedelta(seconds=3000)})
    prev = replace(both, load_shed={"big": True, "small": False})
    assert dispatch(later, prev, sm, t).load_shed["big"] is True


def test_a_discharge_that_holds_pv_at_its_cap_steps_down_by_the_probe() -> None:
    # the battery discharged 400 kW and PV sits at the caps set against that discharge: PV first, but the
    # discharge comes down by the probe (5 % of 1000 kW rated), not all at once (which swung the import
    # from the target to the cap, cycle after cycle)
    s = snap(100, (300, 200), bat_kw=400.0)  # load 100 + 500 + 400 = 1000
    prev = Setpoints(pv_limit_kw={"pv1": 300, "pv2": 200}, battery_p_kw={"b1": 400.0},
                     load_shed={"big": False, "small": False})  # fmt: skip
    out = dispatch(s, prev, site(15.0), Targets(grid_kw=100, import_cap_kw=1000))
    assert out.battery_p_kw["b1"] == pytest.approx(350)
    assert sum(v for v in out.pv_limit_kw.values() if v is not None) > 500  # and the PV caps rise
