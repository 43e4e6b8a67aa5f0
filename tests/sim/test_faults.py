"""Fault schedules: validation, and each injection mechanism over real Modbus TCP, a real Mosquitto and HiGHS."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from controller.forecast import Forecast
from drivers.modbus_client import ModbusDeviceClient
from drivers.mqtt_load import MqttLoadBus
from drivers.sunspec_devices import SunSpecMeter, SunSpecStorage
from optimizer.command import inputs_from_scenario
from optimizer.persistent import RollingOptimizer
from parkctl.clock import SimClock
from parkctl.errors import ConfigError, DeviceError
from sim.broker import PrivateMosquitto
from sim.day import SimOptions, simulate_day
from sim.fault_inject import FaultInjector, FaultyForecaster, FaultyOptimizer, PlannerFaults
from sim.faults import Fault
from sim.forecast import SimForecaster
from sim.modbus_server import ParkEndpoints, start_park_servers
from sim.mqtt_devices import SimMqttLoad
from sim.park import Park
from sim.scenario import Scenario, load_scenario, parse_scenario

H = timedelta(hours=1)


def park_scenario(**update: Any) -> Scenario:
    """The faults-day park without its faults and its DR event (which needs a week of prior days)."""
    return load_scenario("faults-day").model_copy(update={"faults": [], "demand_response": None, **update})


# -- the model ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "message"), [
    ({"kind": "modbus_down", "target": "bess-1", "start": "01:00:00"}, "modbus_down: end is required"),
    ({"kind": "modbus_down", "start": "01:00:00", "end": "02:00:00"}, "target (the device id) is required"),
    ({"kind": "load_no_ack", "start": "01:00:00", "end": "02:00:00"}, "target (the load id) is required"),
    ({"kind": "broker_restart", "target": "x", "start": "01:00:00", "end": "02:00:00"}, "takes no target"),
    ({"kind": "modbus_slow", "target": "bess-1", "start": "01:00:00", "end": "02:00:00"}, "delay_s is required"),
    ({"kind": "forecast_nan", "start": "02:00:00", "end": "01:00:00"}, "end must be after start"),
    ({"kind": "forecast_nan", "start": -60, "end": 60}, "offset >= 0"),
    ({"kind": "meter_stale", "target": "pv-roof-a", "start": 0, "end": 60}, "meter_stale: target must be"),
])  # fmt: skip
def test_fault_validation_names_the_problem(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Fault.model_validate(fault)


def test_offsets_read_as_durations_and_a_restart_needs_no_end() -> None:
    f = Fault.model_validate({"kind": "controller_restart", "start": "19:30:00"})
    assert f.start == timedelta(hours=19, minutes=30) and f.stop == f.start
    assert Fault.model_validate({"kind": "forecast_gap", "start": "PT90M", "end": 6000}).end == timedelta(seconds=6000)


def test_the_scenario_checks_targets_and_overlaps() -> None:
    text = Path(__file__).parents[2].joinpath("sim/scenarios/faults-day.yaml").read_text()
    head = text.split("faults:\n")[0]
    unknown = head + 'faults:\n  - {kind: modbus_down, target: bess-9, start: "01:00:00", end: "02:00:00"}\n'
    with pytest.raises(ConfigError, match="unknown device 'bess-9'"):
        parse_scenario(unknown, "t")
    overlap = head + ('faults:\n  - {kind: load_no_ack, target: chiller-1, start: "01:00:00", end: "02:00:00"}\n'
                      '  - {kind: load_no_ack, target: chiller-1, start: "01:30:00", end: "03:00:00"}\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"faults\[0\] and faults\[1\]"):
        parse_scenario(overlap, "t")
    assert len(load_scenario("faults-day").faults) >= 12


def test_faults_day_has_every_kind_and_none_overlaps() -> None:
    faults = load_scenario("faults-day").faults
    kinds = {f.kind for f in faults}
    assert kinds == set(Fault.model_fields["kind"].annotation.__args__)  # type: ignore[union-attr]
    spans = sorted((f.start, f.stop) for f in faults)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))


# -- Modbus ---------------------------------------------------------------------------------------------
@pytest.fixture
async def park_servers() -> AsyncIterator[tuple[SimClock, Park, ParkEndpoints]]:
    sc = park_scenario()
    clock = SimClock(sc.local_start + 2 * H)
    park = Park(sc.model_copy(update={"start": sc.local_start + 2 * H}), clock)
    servers = await start_park_servers(park, sc)
    try:
        yield clock, park, servers
    finally:
        await servers.stop()


def client_for(servers: ParkEndpoints, dev: str, clock: SimClock, timeout_s: float = 0.3) -> ModbusDeviceClient:
    ep = servers[dev]
    return ModbusDeviceClient(ep.host, ep.port, name=dev, timeout_s=timeout_s, retries=0,
                              monotonic=lambda: clock.now().timestamp())  # fmt: skip


async def test_garbage_then_the_real_image_again(park_servers: tuple[SimClock, Park, ParkEndpoints]) -> None:
    clock, _, servers = park_servers
    meter = SunSpecMeter("meter", client_for(servers, "meter", clock), clock=clock)
    good = await meter.read_meter()
    import random

    servers.servers["meter"].fault.garbage = random.Random(1)
    for _ in range(3):
        with pytest.raises(DeviceError):
            await meter.read_meter()
    servers.servers["meter"].fault.garbage = None
    await clock.advance(clock.now() + timedelta(seconds=15))
    again = await meter.read_meter()  # discovery works again: the SunSpec header is back
    assert math.isclose(again.p_kw, good.p_kw, rel_tol=0.2)


async def test_a_frozen_meter_repeats_itself_until_thawed(park_servers: tuple[SimClock, Park, ParkEndpoints]) -> None:
    clock, _, servers = park_servers
    meter = SunSpecMeter("meter", client_for(servers, "meter", clock), clock=clock)
    await clock.advance(clock.now() + timedelta(minutes=1))  # energy counters off zero ("not accumulated")
    await meter.read_meter()
    servers.servers["meter"].fault.frozen = True
    first = await meter.read_meter()
    await clock.advance(clock.now() + timedelta(minutes=5))
    later = await meter.read_meter()
    assert (later.p_kw, later.import_kwh) == (first.p_kw, first.import_kwh)
    servers.servers["meter"].fault.frozen = False
    thawed = await meter.read_meter()
    assert thawed.import_kwh is not None and first.import_kwh is not None and thawed.import_kwh > first.import_kwh


async def test_slow_answers_time_out_and_down_refuses(park_servers: tuple[SimClock, Park, ParkEndpoints]) -> None:
    clock, _, servers = park_servers
    bat = SunSpecStorage("bess-1", client_for(servers, "bess-1", clock, timeout_s=0.1), clock=clock)
    await bat.read_battery()
    servers.servers["bess-1"].fault.delay_s = 0.3
    with pytest.raises(DeviceError):
        await bat.read_battery()
    servers.servers["bess-1"].fault.delay_s = 0.0
    await bat.read_battery()
    await servers.servers["bess-1"].stop()
    with pytest.raises(DeviceError):
        await bat.read_battery()
    await servers.servers["bess-1"].start()
    await clock.advance(clock.now() + timedelta(seconds=5))  # the client's backoff runs on the clock
    assert (await bat.read_battery()).soc_pct > 0


async def test_a_read_the_caller_gave_up_on_cannot_answer_the_next(
    park_servers: tuple[SimClock, Park, ParkEndpoints],
) -> None:
    """The cycle's read timeout is shorter than the client's: its cancellation must drop the connection,
    or the late answer is read as the answer to the next request (a slow meter then looked healthy)."""
    clock, _, servers = park_servers
    client = client_for(servers, "meter", clock, timeout_s=3.0)
    meter = SunSpecMeter("meter", client, clock=clock)
    await meter.read_meter()
    servers.servers["meter"].fault.delay_s = 0.5
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await meter.read_meter()
    assert not client.connected
    with pytest.raises(TimeoutError):  # still slow: every read fails, none is served a stale answer
        async with asyncio.timeout(0.1):
            await meter.read_meter()
    servers.servers["meter"].fault.delay_s = 0.0
    assert (await meter.read_meter()).p_kw is not None


async def test_setpoints_received_count_writes_once(park_servers: tuple[SimClock, Park, ParkEndpoints]) -> None:
    clock, _, servers = park_servers
    for s in servers.servers.values():
        s.fault.now = clock.now
    bat = SunSpecStorage("bess-1", client_for(servers, "bess-1", clock), clock=clock)
    await bat.set_battery_power(-200.0)  # two register writes: rates, then the mode
    await bat.set_battery_power(-200.0)  # the same at the same instant: a retransmission
    await clock.advance(clock.now() + timedelta(seconds=15))
    await bat.set_battery_power(-200.0)  # a re-send a cycle later: a setpoint
    server = servers.servers["bess-1"]
    assert (server.setpoints_received, server.retransmissions) == (2, 1)


# -- MQTT -------------------------------------------------------------------------------------------------
async def test_a_load_that_ignores_commands_and_one_that_mumbles(mosquitto_broker: PrivateMosquitto) -> None:
    sc = park_scenario()
    clock = SimClock(sc.local_start, paused=True)  # states go out only when the test publishes them
    park = Park(sc, clock)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site="zixing-pilot", load_id="chiller-1", park=park, clock=clock)
    bus = MqttLoadBus(b.host, b.port, site="zixing-pilot", load_ids=["chiller-1"], clock=clock, ack_timeout_s=0.5)
    async with bus, dev:
        await bus.wait_connected(5)
        dev.ignore_commands = True
        outcome = await bus.command("chiller-1", "shed")
        assert not outcome.acked and dev.stats.commands_ignored == 1 and dev.stats.commands_applied == 0
        dev.ignore_commands = False
        assert (await bus.command("chiller-1", "shed")).accepted and dev.stats.commands_applied == 1
        dev.malformed_state = True
        before = bus.stats.malformed_total
        await dev.publish_state()
        for _ in range(100):
            if bus.stats.malformed_total > before:
                break
            await asyncio.sleep(0.01)
        assert bus.stats.malformed_total == before + 1 and dev.stats.malformed_sent == 1


async def test_the_injector_restarts_the_broker_on_the_clock(mosquitto_broker: PrivateMosquitto) -> None:
    sc = park_scenario()
    clock = SimClock(sc.local_start)
    faults = [Fault(kind="broker_restart", start=timedelta(minutes=1), end=timedelta(minutes=2))]
    inj = FaultInjector(faults, sc.local_start, clock, servers={}, loads={}, broker=mosquitto_broker,
                        violation_s=lambda: 0.0)  # fmt: skip
    seen = []

    async def watch() -> None:
        for minute in (0.5, 1.5, 2.5):
            await clock.sleep_until(sc.local_start + timedelta(minutes=minute))
            seen.append(mosquitto_broker.running)

    await asyncio.gather(inj.run(sc.local_start + H), watch())
    assert seen == [True, False, True]
    assert inj.times[0].started == sc.local_start + timedelta(minutes=1)
    assert [t for t, _ in inj.samples][:2] == [sc.local_start + timedelta(minutes=m) for m in (1, 2)]


# -- planner side ---------------------------------------------------------------------------------------
def test_faulty_forecasts_have_holes_or_end_early() -> None:
    sc = park_scenario()
    t0 = sc.local_start

    class Flat:
        def forecast(self, issued_at: Any, start: Any, steps: int, step_s: int) -> Forecast:
            return Forecast(issued_at, start, step_s, {"pv": np.ones(steps)}, np.ones(steps), {"l": np.ones(steps)})

    faults = PlannerFaults(active={"forecast_nan"})
    fc = FaultyForecaster(Flat(), faults).forecast(t0, t0, 96, 900)
    assert np.isnan(fc.load_kw).sum() > 0 and fc.steps == 96
    faults.active = {"forecast_gap"}
    assert FaultyForecaster(Flat(), faults).forecast(t0, t0, 96, 900).steps == 48
    assert faults.injected == {"forecast_nan": 1, "forecast_gap": 1}


def test_the_optimiser_times_out_or_is_infeasible_and_falls_back() -> None:
    sc = park_scenario()
    fc = SimForecaster(sc).forecast(sc.local_start, sc.local_start, 96, 900)
    problem = inputs_from_scenario(sc, fc.pv_kw, fc.load_kw - sum(fc.interruptible_kw.values()), 900, sc.local_start)
    faults = PlannerFaults(active={"optimizer_timeout"})
    opt = FaultyOptimizer(RollingOptimizer(), faults)
    with pytest.raises(TimeoutError):
        opt.solve(problem)
    faults.active = {"optimizer_infeasible"}
    infeasible = opt.solve(problem)
    assert infeasible.fallback and infeasible.status == "infeasible"
    faults.active = set()
    assert not opt.solve(problem).fallback


# -- the controller killed and built again ----------------------------------------------------------------
async def test_a_restart_mid_day_loses_no_record(tmp_path: Path, mosquitto_broker: PrivateMosquitto) -> None:
    sc = park_scenario(start=load_scenario("faults-day").local_start + 19 * H, faults=[
        Fault(kind="controller_restart", start=timedelta(minutes=5)),
        Fault(kind="controller_restart", start=timedelta(minutes=10), end=timedelta(minutes=11)),
    ])  # fmt: skip
    result = await simulate_day(sc, SimOptions(hours=0.25, cycle_s=15, out_dir=tmp_path))
    report = json.loads((tmp_path / "faults.json").read_text())
    rec = report["records"]
    assert rec["controller_crashes"] == 2
    assert rec["setpoints"]["lost_by_device"] == {} and rec["alarms"]["lost"] == 0
    assert result.cycles == 60 - 4  # one minute without a controller
    assert [e["alarm_raised_at"] is not None for e in report["faults"]] == [True, True]
    assert report["every_alarm_cleared"]


@pytest.mark.slow
async def test_a_crash_in_the_middle_of_a_dr_event_leaves_no_hole_in_its_record(
    tmp_path: Path, mosquitto_broker: PrivateMosquitto
) -> None:
    day = load_scenario("faults-day")
    assert day.demand_response is not None
    crash = next(f for f in day.faults if f.kind == "controller_restart" and f.end is not None)
    call = day.demand_response.calls[0]
    assert call.start < day.local_start + crash.start < call.end  # the shipped day crashes mid-event
    start = call.start - timedelta(minutes=5)
    sc = day.model_copy(update={
        "start": start, "faults": [crash.model_copy(update={"start": crash.start - (start - day.local_start),
                                                            "end": crash.stop - (start - day.local_start)})],
        # 7 prior days (the five working days five_day needs); the call made at the start, at short notice
        "demand_response": day.demand_response.model_copy(update={"calls": [
            call.model_copy(update={"sent_at": start, "notice": "REAL_TIME"})]}),
    })  # fmt: skip
    url = str(mosquitto_broker.url)
    await simulate_day(sc, SimOptions(hours=(call.end - start).total_seconds() / 3600 + 0.05, cycle_s=15,
                                      out_dir=tmp_path, mqtt_url=url))  # fmt: skip
    report = json.loads((tmp_path / "faults.json").read_text())
    dr = report["records"]["dr_intervals"]
    assert report["records"]["controller_crashes"] == 1
    assert dr["events"] == 1 and dr["expected_slots"] == dr["db_slots"] == len(call.values_kw) and dr["lost"] == 0
    events = json.loads((tmp_path / "dr_events.json").read_text())
    assert [iv["slot_start"] for iv in events[0]["intervals"]] == [
        (call.start + timedelta(minutes=15 * i)).isoformat() for i in range(len(call.values_kw))
    ]
