"""A planner whose inputs fail keeps the previous plan and keeps running."""

from __future__ import annotations

from datetime import datetime

from controller.cycle import CycleReport
from controller.forecast import Forecast
from controller.mpc import PlanHolder
from controller.planner import Planner
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, MeterReading
from parkctl.clock import SimClock
from sim.replay import replay_config
from sim.scenario import load_scenario


class BrokenForecaster:
    def __init__(self) -> None:
        self.calls = 0

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        self.calls += 1
        raise RuntimeError("forecast service down")


async def test_a_forecaster_that_raises_is_a_failed_re_plan_not_a_dead_planner() -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    config = replay_config(sc, 60.0, "mpc")
    clock = SimClock(sc.local_start)
    holder = PlanHolder()
    statuses: list[str] = []

    class Listener:
        def on_plan(self, status: str, **_: object) -> None:
            statuses.append(status)

    forecaster = BrokenForecaster()
    planner = Planner(config, forecaster, clock, holder, listeners=[Listener()])
    ts = clock.now()
    bats = {b.id: BatteryReading(ts, 0.0, 50.0, b.capacity_kwh, 1000.0, 1000.0) for b in sc.batteries}
    snap = Snapshot(ts=ts, meter=MeterReading(ts, 1000.0), batteries=bats)  # type: ignore[arg-type]
    planner.on_cycle(CycleReport(ts, snap, Setpoints(), (), (), {}, 0.0, False))
    assert await planner.plan_now("test") is None
    assert await planner.plan_now("again") is None  # still there, still answering
    assert forecaster.calls == 2 and planner.failures == 2 and statuses == ["failed", "failed"]
    assert holder.current is None
