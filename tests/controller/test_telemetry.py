"""Controller telemetry over MQTT against a real private Mosquitto: topics, retain, drops, broker restart."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from controller.cycle import CycleReport
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.telemetry import MqttTelemetry, controller_topic
from drivers.capabilities import BatteryReading, MeterReading, PvReading
from sim.broker import PrivateMosquitto

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 12, 0, tzinfo=TZ)
SITE = "zixing-pilot"
S = timedelta(seconds=1)
ALL = f"park/{SITE}/controller/#"


class StepClock:
    """A clock the test moves by hand (telemetry only reads it)."""

    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    async def sleep_until(self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None) -> None:
        raise AssertionError("telemetry must not sleep on the clock")

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def adopt(self, task: asyncio.Task[Any]) -> None:
        return None


def report(t: datetime, grid: float | None = 120.0, pv1: float | None = 300.0) -> CycleReport:
    snap = Snapshot(
        ts=t,
        meter=None if grid is None else MeterReading(t, grid),
        pv={"pv1": None if pv1 is None else PvReading(t, pv1, 600, None)},
        batteries={"b1": BatteryReading(t, -80.0, 61.5, 1000, 500, 500)},
    )
    sp = Setpoints(pv_limit_kw={"pv1": 450.0}, battery_p_kw={"b1": -80.0}, reason="rules")
    return CycleReport(t, snap, sp, (), (), {"read": 0.001}, 0.002, False)


def make(broker: PrivateMosquitto, clock: StepClock, **kw: Any) -> MqttTelemetry:
    kw.setdefault("every_cycles", 1)
    return MqttTelemetry(broker.host, broker.port, site=SITE, clock=clock, backoff_s=(0.02, 0.2), **kw)


async def eventually(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Inbox:
    """Every message a subscriber got: (topic, payload, retain flag)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Any, bool]] = []

    def on(self, topic: str) -> list[Any]:
        return [p for t, p, _ in self.got if t == topic]


@contextlib.asynccontextmanager
async def subscriber(broker: PrivateMosquitto) -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with aiomqtt.Client(broker.host, broker.port) as c:
        await c.subscribe(ALL, qos=1)

        async def pump() -> None:
            async for m in c.messages:
                raw = m.payload if isinstance(m.payload, bytes) else b""
                inbox.got.append((m.topic.value, json.loads(raw), bool(m.retain)))

        task = asyncio.create_task(pump())
        try:
            yield inbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


MEAS, STATE, PLAN = (controller_topic(SITE, k) for k in ("measurements", "state", "plan"))


async def test_topics_payloads_and_retain_flags(mosquitto_broker: PrivateMosquitto) -> None:
    clock = StepClock()
    async with subscriber(mosquitto_broker) as live, make(mosquitto_broker, clock) as tel:
        await tel.wait_connected(5)
        tel.on_plan("optimal", plan_ts=T0 - 60 * S, solve_s=0.7)
        tel.publish_plan({"ts": T0 - 60 * S, "objective_cny": 1234.5, "gap": float("nan"), "steps": [1.0, 2.0]})
        tel.on_cycle(report(T0))
        clock.t = T0 + S
        tel.on_cycle(report(T0 + S, pv1=None))  # pv1 not read: null, and an alarm
        # state changes that follow each other faster than they are sent collapse into the latest
        await eventually(lambda: len(live.on(MEAS)) == 2 and len(live.on(PLAN)) == 1
                         and any(st["alarms"] == 1 for st in live.on(STATE)))  # fmt: skip
        m0, m1 = live.on(MEAS)
        assert m0["ts"] == T0.isoformat() and m0["grid_kw"] == 120.0 and m0["pv_kw"] == 300.0
        assert m0["batteries"]["b1"] == {"p_kw": -80.0, "soc_pct": 61.5, "setpoint_kw": -80.0}
        assert m0["pv"]["pv1"] == {"p_kw": 300.0, "limit_kw": 450.0} and m0["complete"] is True
        assert m1["pv"]["pv1"]["p_kw"] is None and m1["pv_kw"] is None and m1["load_kw"] is None
        assert live.on(PLAN)[0] == {"ts": (T0 - 60 * S).isoformat(), "objective_cny": 1234.5, "gap": None,
                                    "steps": [1.0, 2.0]}  # fmt: skip
        last = live.on(STATE)[-1]
        assert last["strategy"] == "rules" and last["optimizer_status"] == "optimal"
        assert last["plan_ts"] == (T0 - 60 * S).isoformat() and last["plan_age_s"] == 61.0
        assert last["alarms"] == 1 and last["alarm_codes"] == ["stale:pv1"] and last["fallback_active"] is False
        assert tel.stats.dropped == 0 and tel.stats.connected
    # a late subscriber sees exactly the retained topics, flagged retained, and no measurement
    async with subscriber(mosquitto_broker) as late:
        await eventually(lambda: len(late.got) == 2)
        await asyncio.sleep(0.1)
        assert sorted((t, r) for t, _, r in late.got) == [(PLAN, True), (STATE, True)]


async def test_state_is_published_on_change_only(mosquitto_broker: PrivateMosquitto) -> None:
    clock = StepClock()
    async with (
        subscriber(mosquitto_broker) as live,
        make(mosquitto_broker, clock, every_cycles=None, every_s=10) as tel,
    ):
        await tel.wait_connected(5)
        for i in range(25):  # one cycle a second, nothing changes: one state, a measurement every 10 s
            clock.t = T0 + i * S
            tel.on_cycle(report(clock.t))
        tel.publish_plan({"n": 1})
        tel.publish_plan({"n": 1})  # same summary again: not re-sent
        await eventually(lambda: len(live.on(MEAS)) == 3 and len(live.on(STATE)) == 1 and len(live.on(PLAN)) == 1)
        await asyncio.sleep(0.1)
        assert [m["ts"] for m in live.on(MEAS)] == [(T0 + i * S).isoformat() for i in (0, 10, 20)]
        assert len(live.on(STATE)) == 1 and len(live.on(PLAN)) == 1
        clock.t = T0 + 25 * S
        tel.on_cycle(report(clock.t, grid=None))
        await eventually(lambda: len(live.on(STATE)) == 2)
        assert [s["alarm_codes"] for s in live.on(STATE)] == [[], ["stale:meter"]]
        assert tel.stats.publish_failures == 0


async def test_full_queue_drops_oldest_and_counts(mosquitto_broker: PrivateMosquitto) -> None:
    clock = StepClock()
    tel = make(mosquitto_broker, clock, queue_size=3)
    for i in range(5):  # not started yet: nothing leaves the queue
        tel.on_cycle(report(T0 + i * S))
    assert tel.stats.dropped == 2 and tel.stats.queued == 3
    async with subscriber(mosquitto_broker) as live, tel:
        await eventually(lambda: len(live.on(MEAS)) == 3)
        assert [m["ts"] for m in live.on(MEAS)] == [(T0 + i * S).isoformat() for i in (2, 3, 4)]
        assert len(live.on(STATE)) == 1  # retained state is a latest-value slot, never dropped
        assert tel.stats.dropped == 2 and tel.stats.queued == 0


async def test_survives_broker_restart(mosquitto_broker: PrivateMosquitto) -> None:
    clock = StepClock()
    async with make(mosquitto_broker, clock, queue_size=10) as tel:
        async with subscriber(mosquitto_broker) as live:
            await tel.wait_connected(5)
            tel.on_cycle(report(T0))
            await eventually(lambda: len(live.on(MEAS)) == 1)
        await mosquitto_broker.astop()
        await eventually(lambda: not tel.stats.connected)
        started = time.perf_counter()
        for i in range(1, 4):  # while the broker is down: queued, and on_cycle stays instant
            tel.on_cycle(report(T0 + i * S))
        assert time.perf_counter() - started < 0.05
        await mosquitto_broker.astart()
        async with subscriber(mosquitto_broker) as live:
            await tel.wait_connected(10)
            tel.on_cycle(report(T0 + 4 * S))
            await eventually(lambda: (T0 + 4 * S).isoformat() in [m["ts"] for m in live.on(MEAS)], 10)
            assert any(r for t, _, r in live.got if t == STATE)  # retained state there after the restart
        assert tel.stats.reconnects >= 1


async def test_stop_flushes_what_is_queued(mosquitto_broker: PrivateMosquitto) -> None:
    clock = StepClock()
    async with subscriber(mosquitto_broker) as live:
        async with make(mosquitto_broker, clock) as tel:
            await tel.wait_connected(5)
            for i in range(20):
                tel.on_cycle(report(T0 + i * S))
        await eventually(lambda: len(live.on(MEAS)) == 20)


def test_on_cycle_is_synchronous_and_bounded() -> None:
    # no event loop at all here: on_cycle must neither await nor need one
    assert not inspect.iscoroutinefunction(MqttTelemetry.on_cycle)
    tel = MqttTelemetry("127.0.0.1", 1, site=SITE, clock=StepClock(), every_cycles=1, queue_size=50)
    started = time.perf_counter()
    for i in range(2000):
        assert tel.on_cycle(report(T0 + i * S)) is None  # type: ignore[func-returns-value]
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 0.002, f"on_cycle took {per_call * 1e3:.3f} ms"
    assert tel.stats.queued == 50 and tel.stats.dropped == 1950


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="every_cycles or every_s"):
        MqttTelemetry("h", site=SITE, clock=StepClock(), every_cycles=None, every_s=None)
    with pytest.raises(ValueError, match="site"):
        MqttTelemetry("h", site="a/b", clock=StepClock())
    with pytest.raises(TypeError):
        MqttTelemetry("h", site=SITE, clock=StepClock()).publish_plan({"x": object()})


async def test_stop_is_prompt_without_a_broker() -> None:
    from sim.broker import free_port

    tel = MqttTelemetry("127.0.0.1", free_port(), site=SITE, clock=StepClock(), every_cycles=1)
    async with tel:
        tel.on_cycle(report(T0))
        await asyncio.sleep(0.1)  # a few failed connection attempts
        assert not tel.stats.connected
        started = time.perf_counter()
    assert time.perf_counter() - started < 1.0
    assert tel.stats.queued == 1  # kept, not lost, while there was no broker
