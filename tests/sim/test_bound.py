"""The perfect-foresight bound is a lower bound: no run of the park, however it is driven, costs less.

The park is driven directly (no controller) by random schedules: battery setpoints anywhere in their
ratings, sheds and restores at random minutes (the park refuses what its rules forbid), PV limits. The
bound without grid limits must stay at or below every run's bill; with limits, below every run that kept
them. A failure means the relaxation in :mod:`sim.bound` left out something the physics can do.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.bound import bill, bound_bill, build, month_share, realised, solve
from sim.park import Park
from sim.scenario import Scenario, load_scenario

BASE = load_scenario("chenzhou-summer-weekday")


class HandClock:
    """Time moved by hand: the park reads it when a command arrives."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


def _scenario(seed: int, start_h: int, soc: float) -> Scenario:
    start = BASE.start + timedelta(hours=start_h)
    bats = [b.model_copy(update={"soc_init_pct": soc}) for b in BASE.batteries]
    return BASE.model_copy(update={"seed": seed, "start": start, "batteries": bats})


Action = tuple[int, str, int, float]  # (minute, kind, device index, value)
actions = st.lists(st.tuples(st.integers(0, 239), st.sampled_from(["battery", "shed", "restore", "pv"]),
                             st.integers(0, 3), st.floats(-1.0, 1.0)), max_size=40)  # fmt: skip


def _drive(sc: Scenario, hours: int, plan: list[Action]) -> dict[str, float]:
    clock = HandClock(sc.local_start)
    park = Park(sc, clock)  # type: ignore[arg-type]
    for minute, kind, i, x in sorted(plan, key=lambda a: a[0]):
        if minute >= hours * 60:
            continue
        clock.t = sc.local_start + timedelta(minutes=minute)
        park.sync()
        if kind == "battery":
            b = sc.batteries[i % len(sc.batteries)]
            park.set_battery_power(b.id, x * (b.p_discharge_max_kw if x > 0 else b.p_charge_max_kw), revert_s=1e9)
        elif kind in ("shed", "restore"):
            ld = sc.interruptible_loads[i % len(sc.interruptible_loads)]
            (park.request_shed if kind == "shed" else park.request_restore)(ld.id)
        else:
            park.set_pv_limit(sc.pv[i % len(sc.pv)].id, 100.0 * abs(x))
    park.advance_to(sc.local_start + timedelta(hours=hours))
    return park.kpis()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), start_h=st.integers(0, 20), soc=st.floats(10.0, 95.0),
       hours=st.integers(1, 4), plan=actions)  # fmt: skip
def test_no_run_of_the_park_beats_the_bound(seed: int, start_h: int, soc: float, hours: int,
                                            plan: list[Action]) -> None:  # fmt: skip
    sc = _scenario(seed, start_h, soc)
    k = _drive(sc, hours, plan)
    cost = bill(k, month_share(sc, hours))
    assert bound_bill(sc, hours, keep_limits=False) <= cost + 1e-6 * abs(cost)
    if k["import_limit_violation_s"] == 0 and k["export_limit_violation_s"] == 0:
        assert bound_bill(sc, hours) <= cost + 1e-6 * abs(cost)


def test_the_bound_is_the_bill_of_its_own_flows() -> None:
    """The objective adds up to the parts the KPIs name (energy, shed, wear, demand), from the solved flows."""
    import pyomo.environ as pyo

    r = realised(BASE, 6.0)
    m = build(BASE, r)
    total = solve(m)
    h = r.block_s / 3600.0
    energy = sum(h * r.price_min[t] * pyo.value(m.imp[t]) for t in range(r.n))
    shed = sum(h * ld.shed_cost_cny_per_kwh * r.nominal_kw[ld.id][t] * pyo.value(m.shed[ld.id, t])
               for ld in BASE.interruptible_loads for t in range(r.n))  # fmt: skip
    wear = sum(h * b.degradation_cny_per_kwh * pyo.value(m.dis[b.id, t]) for b in BASE.batteries for t in range(r.n))
    demand = BASE.tariff.demand_charge_cny_per_kw_month * month_share(BASE, 6.0) * max(
        pyo.value(m.imp[t]) for t in range(r.n))
    assert total == pytest.approx(energy + shed + wear + demand, rel=1e-6)


def test_a_start_off_the_quarter_hour_is_refused() -> None:
    sc = BASE.model_copy(update={"start": BASE.start + timedelta(minutes=5)})
    with pytest.raises(ValueError, match="quarter hour"):
        realised(sc, 1.0)
