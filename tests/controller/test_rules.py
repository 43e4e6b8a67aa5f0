"""Rule-based self-consumption, cycle by cycle: inputs -> expected setpoints."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.rules import SiteModel, decide_rules, split_battery_power, split_pv_cap
from controller.setpoints import Setpoints
from controller.settings import BatteryLimits, GridLimits, RuleSettings
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, LoadReading, MeterReading, PvReading

TS = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SITE = SiteModel(
    grid=GridLimits(import_cap_kw=1000, export_cap_kw=0),
    batteries={"b1": BatteryLimits(soc_min_pct=10, soc_max_pct=90)},
    pv_rated_kw={"pv1": 600, "pv2": 400},
    load_nominal_kw={"big": 300, "small": 100},
    rules=RuleSettings(target_import_kw=100, export_margin_kw=50, import_margin_kw=100,
                       restore_headroom_kw=100, pv_probe_pct=5, pv_drop_pct_per_min=0, load_drop_pct_per_min=0),
)  # the reserves for what moves within a cycle are tested on their own, in test_dispatch_reserves.py


def snap(grid_kw: float | None, pv: tuple[float, float], bat_kw: float = 0.0, soc: float = 50.0,
         loads: tuple[float, float] = (300, 100)) -> Snapshot:
    return Snapshot(
        ts=TS,
        meter=None if grid_kw is None else MeterReading(TS, grid_kw),
        pv={"pv1": PvReading(TS, pv[0], 600, None), "pv2": PvReading(TS, pv[1], 400, None)},
        batteries={"b1": BatteryReading(TS, bat_kw, soc, 1000, 500, 500)},
        loads={"big": LoadReading(TS, loads[0], loads[0] > 0), "small": LoadReading(TS, loads[1], loads[1] > 0)},
    )


NONE = Setpoints(pv_limit_kw={"pv1": None, "pv2": None}, battery_p_kw={"b1": 0.0},
                 load_shed={"big": False, "small": False})


def test_surplus_charges_battery_and_keeps_target_import() -> None:
    # load = grid + pv + battery = -100 + 700 + 0 = 600; surplus 100 -> charge 200 (target import 100)
    out = decide_rules(snap(-100, (400, 300)), NONE, SITE)
    assert out.battery_p_kw["b1"] == pytest.approx(-200)
    # allowance 600 + 200 - 50 = 750: each plant keeps what it makes, the 50 kW left go by rating
    assert out.pv_limit_kw == {"pv1": pytest.approx(430), "pv2": pytest.approx(320)}


def test_deficit_discharges_battery() -> None:
    # load = 400 + 100 + 0 = 500, pv 100 -> discharge 300 to leave 100 kW import
    out = decide_rules(snap(400, (60, 40)), NONE, SITE)
    assert out.battery_p_kw["b1"] == pytest.approx(300)


def test_full_battery_caps_pv_to_load_minus_margin() -> None:
    out = decide_rules(snap(-200, (500, 300), soc=90), NONE, SITE)  # load 600, battery full
    assert out.battery_p_kw["b1"] == 0
    caps = out.pv_limit_kw
    assert sum(c for c in caps.values() if c is not None) == pytest.approx(600 - 50)
    assert caps["pv1"] == pytest.approx(550 * 0.6)


def test_empty_battery_does_not_discharge() -> None:
    out = decide_rules(snap(400, (60, 40), soc=10), NONE, SITE)
    assert out.battery_p_kw["b1"] == 0


def test_probe_raises_cap_step_by_step_while_battery_has_room() -> None:
    # cycle 1: fleet capped at 500 and producing 500 (sun hidden behind the cap)
    prev = Setpoints(pv_limit_kw={"pv1": 300, "pv2": 200}, battery_p_kw={"b1": 0.0},
                     load_shed={"big": False, "small": False})
    out = decide_rules(snap(0, (300, 200)), prev, SITE)  # load 500, no surplus visible
    probe = 0.05 * 1000
    assert out.battery_p_kw["b1"] == pytest.approx(-(100 + probe))
    assert sum(out.pv_limit_kw.values()) == pytest.approx(500 + 100 + probe - 50)  # type: ignore[arg-type]


def test_no_discharge_while_pv_is_held_back() -> None:
    # PV at its caps but the load is above PV: PV must rise first, the battery must not fill in
    prev = Setpoints(pv_limit_kw={"pv1": 150, "pv2": 100}, battery_p_kw={"b1": 0.0},
                     load_shed={"big": False, "small": False})
    out = decide_rules(snap(400, (150, 100), soc=50), prev, SITE)  # load 650, pv 250
    assert out.battery_p_kw["b1"] <= 0
    assert sum(out.pv_limit_kw.values()) >= 650 - 50 - 1e-6  # type: ignore[arg-type]


def run_closed_loop(avail: tuple[float, float], load_kw: float, soc: float, cycles: int) -> list[tuple[float, float]]:
    """Ideal devices that follow setpoints at once; returns (grid_kw, pv_kw) per cycle."""
    prev = NONE
    pv_now, bat_now = avail, 0.0
    trace = []
    for _ in range(cycles):
        pv_total = sum(pv_now)
        grid = load_kw - pv_total - bat_now
        s = Snapshot(ts=TS, meter=MeterReading(TS, grid),
                     pv={"pv1": PvReading(TS, pv_now[0], 600, None), "pv2": PvReading(TS, pv_now[1], 400, None)},
                     batteries={"b1": BatteryReading(TS, bat_now, soc, 1000, 500, 500)},
                     loads={"big": LoadReading(TS, 300, True), "small": LoadReading(TS, 100, True)})
        prev = decide_rules(s, prev, SITE)
        caps = prev.pv_limit_kw
        pv_now = tuple(min(a, caps[p]) if caps[p] is not None else a  # type: ignore[type-var]
                       for a, p in zip(avail, ("pv1", "pv2"), strict=True))
        bat_now = prev.battery_p_kw["b1"]
        trace.append((load_kw - sum(pv_now) - bat_now, sum(pv_now)))
    return trace


def test_closed_loop_settles_at_target_without_curtailing_what_the_battery_can_take() -> None:
    trace = run_closed_loop(avail=(550, 350), load_kw=600, soc=50, cycles=12)
    assert all(grid >= 0 for grid, _ in trace)  # never exports
    grid, pv = trace[-1]
    assert grid == pytest.approx(100, abs=1)
    assert pv == pytest.approx(900, abs=1)  # all 300 kW of surplus went into the battery


def test_closed_loop_with_full_battery_curtails_to_load_minus_margin() -> None:
    trace = run_closed_loop(avail=(550, 350), load_kw=600, soc=90, cycles=12)
    assert all(grid >= 0 for grid, _ in trace)
    grid, pv = trace[-1]
    assert grid == pytest.approx(50, abs=1)
    assert pv == pytest.approx(550, abs=1)


def test_stale_meter_goes_to_safe_state() -> None:
    prev = Setpoints(load_shed={"big": True})
    out = decide_rules(snap(None, (300, 200)), prev, SITE)
    assert out.battery_p_kw == {"b1": 0.0}
    assert out.pv_limit_kw == {"pv1": 0.0, "pv2": 0.0}
    assert out.load_shed == {"big": True}
    assert "stale" in out.reason


def test_import_far_over_cap_sheds_as_many_loads_as_needed() -> None:
    # battery empty, import 1250 > ceiling 900: shedding big (300) leaves 950, so small goes too
    out = decide_rules(snap(1250, (0, 0), soc=10), NONE, SITE)
    assert out.load_shed == {"big": True, "small": True}


def test_shed_stops_once_below_ceiling() -> None:
    out = decide_rules(snap(1000, (0, 0), soc=10), NONE, SITE)  # 1000 > 900 -> shed big -> 700
    assert out.load_shed == {"big": True, "small": False}
    # next cycle: the big load is off, import 700; restoring it (300) would give 1000 > 900 - 100
    prev = Setpoints(pv_limit_kw={}, battery_p_kw={"b1": 0.0}, load_shed={"big": True, "small": False})
    out2 = decide_rules(snap(700, (0, 0), soc=10, loads=(0, 100)), prev, SITE)
    assert out2.load_shed["big"] is True
    # import drops to 400: 400 + 300 = 700 <= 800 -> restore
    out3 = decide_rules(snap(400, (0, 0), soc=10, loads=(0, 100)), prev, SITE)
    assert out3.load_shed["big"] is False


@given(
    allowed=st.floats(-500, 2000),
    p1=st.floats(0, 600), p2=st.floats(0, 400),
    c1=st.one_of(st.none(), st.floats(0, 600)), c2=st.one_of(st.none(), st.floats(0, 400)),
)
def test_pv_caps_never_exceed_allowance(allowed: float, p1: float, p2: float,
                                        c1: float | None, c2: float | None) -> None:
    pv = {"pv1": PvReading(TS, p1, 600, None), "pv2": PvReading(TS, p2, 400, None)}
    caps = split_pv_cap(allowed, pv, {"pv1": 600, "pv2": 400}, {"pv1": c1, "pv2": c2})
    if allowed >= 1000:
        assert caps == {"pv1": None, "pv2": None}
    else:
        values = [c for c in caps.values() if c is not None]
        assert len(values) == 2
        assert all(v >= 0 for v in values)
        assert sum(values) <= max(0.0, allowed) + 1e-6


@given(want=st.floats(-3000, 3000), soc1=st.floats(0, 100), soc2=st.floats(0, 100))
def test_battery_split_respects_headroom_and_soc_window(want: float, soc1: float, soc2: float) -> None:
    s = Snapshot(ts=TS, meter=MeterReading(TS, 0), batteries={
        "a": BatteryReading(TS, 0, soc1, 1000, 500, 400), "b": BatteryReading(TS, 0, soc2, 500, 200, 250)})
    limits = {"a": BatteryLimits(soc_min_pct=10, soc_max_pct=90), "b": BatteryLimits(soc_min_pct=20, soc_max_pct=80)}
    out = split_battery_power(want, s, limits)
    assert -700 - 1e-9 <= sum(out.values()) <= 650 + 1e-9
    assert abs(sum(out.values())) <= abs(want) + 1e-6
    assert -500 - 1e-9 <= out["a"] <= 400 + 1e-9 and -200 - 1e-9 <= out["b"] <= 250 + 1e-9
    if soc1 <= 10:
        assert out["a"] <= 0
    if soc1 >= 90:
        assert out["a"] >= 0
    if soc2 <= 20:
        assert out["b"] <= 0
    if soc2 >= 80:
        assert out["b"] >= 0


def test_shedding_a_load_also_backs_the_battery_off() -> None:
    # the plan sheds the big load (300 kW) while the battery covers the deficit: after the shed the
    # battery must not keep discharging into a smaller load (that would export)
    from controller.rules import Targets, dispatch

    targets = Targets(grid_kw=100, import_cap_kw=1000, shed={"big": True})
    out = dispatch(snap(500, (60, 40), soc=50), NONE, SITE, targets)  # load 600, pv 100
    assert out.load_shed["big"] is True
    # after the shed the load is 300: the battery discharges at most what leaves the export margin
    # (300 - 100 - 50 = 150), not the 400 the load asks for now
    assert out.battery_p_kw["b1"] == pytest.approx(150)
    grid_after = 600 - 300 - 100 - out.battery_p_kw["b1"]
    assert grid_after >= SITE.rules.export_margin_kw
