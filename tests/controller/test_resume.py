"""A restarted controller picks up what devices were last told, and the plan in force, from its store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from controller.build import build_controller
from parkctl.clock import SimClock
from sim.day import controller_config_for, running_park
from sim.forecast import SimForecaster
from sim.scenario import load_scenario


async def test_restart_resumes_commanded_setpoints_and_plan(tmp_path: Path, mosquitto_broker: object) -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    sc = sc.model_copy(update={"start": sc.local_start + timedelta(hours=12)})
    clock = SimClock(sc.local_start)
    db = tmp_path / "controller.db"
    url = str(mosquitto_broker.url)  # type: ignore[attr-defined]
    async with running_park(sc, clock, url, publish_s=15) as (_, endpoints, broker, _):
        config = controller_config_for(sc, endpoints, broker, 15, "mpc", db_path=str(db))
        async with build_controller(config, clock, forecaster=SimForecaster(sc)) as first:
            assert first.planner is not None and first.plans is not None
            for _ in range(3):
                await first.runtime.run_cycle()
                await clock.advance(clock.now() + timedelta(seconds=15))
            await first.planner.plan_now("test")
            before = first.runtime.writer.commanded
            plan_before = first.plans.current
        assert plan_before is not None
        assert any(cap is not None for cap in before.pv_limit_kw.values())  # midday: PV is capped
        async with build_controller(config, clock, forecaster=SimForecaster(sc)) as second:
            after = second.runtime.writer.commanded
            assert after.pv_limit_kw == before.pv_limit_kw
            assert after.battery_p_kw == before.battery_p_kw
            assert after.load_shed == before.load_shed
            assert second.plans is not None and second.plans.current is not None
            assert second.plans.current.plan.grid_import_kw == plan_before.plan.grid_import_kw
