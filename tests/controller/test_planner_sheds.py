"""The planner counts sheds per site-local day, as the loads do: a new day gives each load its sheds back.

Before this was fixed the count only started again when a shed ran across midnight, so a load shed
``max_sheds_per_day`` times on the first day was never planned for a shed again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.cycle import CycleReport
from controller.mpc import PlanHolder
from controller.planner import Planner
from controller.planning import ParkState, build_inputs
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from parkctl.clock import SimClock
from sim.forecast import SimForecaster
from sim.replay import replay_config
from sim.scenario import load_scenario

SC = load_scenario("chenzhou-summer-weekday")
LOAD = "chiller-1"


def _planner() -> Planner:
    config = replay_config(SC, 60.0, "mpc")
    return Planner(config, SimForecaster(SC), SimClock(SC.local_start), PlanHolder())


def _cycle(planner: Planner, ts: datetime, shed: bool) -> None:
    loads = dict.fromkeys((ld.id for ld in SC.interruptible_loads), False) | {LOAD: shed}
    planner.on_cycle(CycleReport(ts, Snapshot(ts=ts, meter=None), Setpoints(load_shed=loads), (), (), {}, 0.0, False))


def _shed_for(planner: Planner, start: datetime, minutes: int) -> datetime:
    for k in range(minutes):
        _cycle(planner, start + timedelta(minutes=k), True)
    end = start + timedelta(minutes=minutes)
    _cycle(planner, end, False)
    return end


def _use_the_days_sheds(planner: Planner) -> datetime:
    """Four 30-min sheds from 01:00 on the scenario's first day (its max_sheds_per_day); that day's 01:00."""
    day0 = SC.local_start.replace(hour=1)
    for k in range(4):
        _shed_for(planner, day0 + timedelta(hours=2 * k), 30)
    return day0


def test_sheds_are_counted_per_local_day_and_given_back_at_midnight() -> None:
    planner = _planner()
    day0 = _use_the_days_sheds(planner)
    assert planner.load_history[LOAD].sheds_today == 4
    _cycle(planner, day0 + timedelta(hours=22), False)
    assert planner.load_history[LOAD].sheds_today == 4  # same local date, 23:00
    next_day = day0 + timedelta(days=1)
    _cycle(planner, next_day, False)
    hist = planner.load_history[LOAD]
    assert hist.sheds_today == 0 and hist.day == next_day.date()
    _shed_for(planner, next_day + timedelta(hours=1), 20)
    assert planner.load_history[LOAD].sheds_today == 1


def test_the_optimiser_is_offered_the_new_days_sheds() -> None:
    planner = _planner()
    day0 = _use_the_days_sheds(planner)
    later = day0 + timedelta(days=1, hours=2)
    _cycle(planner, later, False)
    fc = SimForecaster(SC).forecast(later, later, 96, 900)
    state = ParkState(ts=later, soc_pct={b.id: 50.0 for b in SC.batteries}, loads=planner.load_history)
    inputs = build_inputs(planner.config, fc, state)
    by_id = {ld.id: ld for ld in inputs.interruptible_loads}
    assert by_id[LOAD].sheds_today == 0


def test_a_shed_across_midnight_counts_on_the_day_it_began() -> None:
    planner = _planner()
    evening = SC.local_start.replace(hour=23, minute=40)
    _cycle(planner, evening, True)
    assert planner.load_history[LOAD].sheds_today == 1
    _cycle(planner, evening + timedelta(minutes=30), True)  # 00:10 next day, still the same shed
    hist = planner.load_history[LOAD]
    assert hist.sheds_today == 0 and hist.shed_since == evening
    _cycle(planner, evening + timedelta(minutes=40), False)
    _cycle(planner, evening + timedelta(hours=1), True)  # a new shed on the new day
    assert planner.load_history[LOAD].sheds_today == 1


def test_a_plan_made_at_midnight_before_the_days_first_cycle_has_the_new_days_sheds() -> None:
    """The planner runs at a step start before that instant's cycle: at 00:00 the last cycle seen is 23:59."""
    planner = _planner()
    _use_the_days_sheds(planner)
    midnight = SC.local_start + timedelta(days=1)
    _cycle(planner, midnight - timedelta(minutes=1), False)
    assert planner.load_history[LOAD].sheds_today == 4
    assert planner.history_at(midnight)[LOAD].sheds_today == 0
    assert planner.history_at(midnight - timedelta(minutes=1))[LOAD].sheds_today == 4
