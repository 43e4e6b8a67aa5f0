"""Simulated MQTT loads against a real private Mosquitto, observed by a plain MQTT client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from drivers import topics as tp
from parkctl.clock import SimClock
from sim.broker import PrivateMosquitto, free_port
from sim.mqtt_devices import SimMqttLoad, SimMqttLoads
from sim.state import CommandResult, LoadState

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 14, 0, tzinfo=TZ)
SITE = "zixing-pilot"
S = timedelta(seconds=1)


class FakePark:
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.running: dict[str, bool] = {}
        self.calls: list[tuple[str, str]] = []
        self.answer: CommandResult | Exception | None = None  # None: accept

    def load_state(self, load_id: str) -> LoadState:
        running = self.running.get(load_id, True)
        return LoadState(self.clock.now(), 80.0 if running else 0.0, running, None, 0)

    def _apply(self, load_id: str, action: str, running: bool) -> CommandResult:
        self.calls.append((load_id, action))
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is not None:
            return self.answer
        self.running[load_id] = running
        return CommandResult(True)

    def request_shed(self, load_id: str) -> CommandResult:
        return self._apply(load_id, "shed", False)

    def request_restore(self, load_id: str) -> CommandResult:
        return self._apply(load_id, "restore", True)


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool


class Observer:
    """A plain client recording everything under ``park/{site}/``; waits are bounded."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[Seen] = []

    def of(self, load_id: str, kind: tp.Kind) -> list[Seen]:
        topic = tp.load_topic(SITE, load_id, kind)
        return [m for m in self.seen if m.topic == topic]

    def acks(self, load_id: str = "L1") -> list[tp.Ack]:
        return [tp.Ack.decode(m.payload) for m in self.of(load_id, "ack")]

    def states(self, load_id: str = "L1") -> list[tp.StateReport]:
        return [tp.StateReport.decode(m.payload) for m in self.of(load_id, "state")]

    async def until(self, cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met; seen: {[(m.topic, m.payload) for m in self.seen]}")
            await asyncio.sleep(0.005)

    async def command(self, load_id: str, payload: bytes) -> None:
        await self.client.publish(tp.load_topic(SITE, load_id, "cmd"), payload, qos=1)


@contextlib.asynccontextmanager
async def observer(broker: PrivateMosquitto) -> AsyncIterator[Observer]:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        obs = Observer(client)
        await client.subscribe(f"park/{SITE}/#", qos=1)

        async def pump() -> None:
            async for m in client.messages:
                obs.seen.append(Seen(m.topic.value, bytes(m.payload), m.retain))

        task = asyncio.create_task(pump())
        try:
            yield obs
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def cmd(action: str, cmd_id: str = "c-1") -> bytes:
    return tp.Command(cmd_id, action, T0).encode()  # type: ignore[arg-type]


async def test_state_published_each_period_at_virtual_instants(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)  # make this test an actor before devices start: time waits for us
    b = mosquitto_broker
    async with (
        observer(b) as obs,
        SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=FakePark(clock), clock=clock, period_s=5) as dev,
    ):
        await clock.advance(T0 + 15 * S)
        await obs.until(lambda: len(obs.states()) == 4)
        states = obs.states()
        assert [s.ts for s in states] == [T0 + i * 5 * S for i in range(4)]
        assert [s.seq for s in states] == [1, 2, 3, 4]
        assert all(s.running and s.p_kw == 80.0 for s in states)
        assert [m.payload for m in obs.of("L1", "availability")] == [b"online"]
        assert dev.stats.states_published == 4 and dev.stats.connected
    # retained: a controller that subscribes later sees the last state and the availability at once
    async with observer(b) as late:
        await late.until(lambda: len(late.of("L1", "state")) == 1 and len(late.of("L1", "availability")) == 1)
        assert late.of("L1", "state")[0].retain and late.states()[0].seq == 4
        assert late.of("L1", "availability")[0].payload == b"offline"  # stop() said so


async def test_commands_acks_duplicates_and_refusals(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    park = FakePark(clock)
    b = mosquitto_broker
    async with (
        observer(b) as obs,
        SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=park, clock=clock) as dev,
    ):
        await clock.advance(T0)  # let the device take its turn at T0: the first periodic report
        await obs.until(lambda: len(obs.states()) == 1)
        await obs.command("L1", cmd("shed", "c-1"))
        await obs.until(lambda: len(obs.acks()) == 1 and len(obs.states()) == 2)
        assert obs.acks()[0] == tp.Ack("c-1", True, "", T0)
        assert not obs.states()[1].running  # fresh state right after the command

        await obs.command("L1", cmd("shed", "c-1"))  # a QoS-1 redelivery: same answer, not re-applied
        await obs.until(lambda: len(obs.acks()) == 2)
        assert obs.acks()[1] == obs.acks()[0] and park.calls == [("L1", "shed")]

        park.answer = CommandResult(False, "min off time not reached")
        await obs.command("L1", cmd("restore", "c-2"))
        park.answer = RuntimeError("relay stuck")
        await obs.command("L1", cmd("restore", "c-3"))
        await obs.command("L1", json.dumps({"id": "c-4", "action": "explode", "ts": T0.isoformat()}).encode())
        await obs.command("L1", b"{not json at all")
        await obs.command("L1", json.dumps({"action": "shed"}).encode())
        park.answer = None
        await obs.command("L1", cmd("restore", "c-5"))
        await obs.until(lambda: len(obs.acks()) == 6)
        by_id = {a.id: a for a in obs.acks()}
        assert (by_id["c-2"].accepted, by_id["c-2"].reason) == (False, "min off time not reached")
        assert not by_id["c-3"].accepted and "device error: relay stuck" in by_id["c-3"].reason
        assert not by_id["c-4"].accepted and by_id["c-4"].reason.startswith("malformed command: bad_value")
        assert by_id["c-5"].accepted and park.running["L1"]
        st = dev.stats
        assert (st.commands, st.duplicate_commands) == (5, 1)
        assert dict(st.malformed) == {"bad_value": 1, "bad_json": 1, "missing_field": 1}


async def test_stop_says_offline_and_kill_fires_the_will(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=FakePark(clock), clock=clock)
    async with observer(b) as obs:

        def availability() -> list[bytes]:
            return [m.payload for m in obs.of("L1", "availability")]

        await dev.start()
        await obs.until(lambda: availability() == [b"online"])
        await dev.kill()
        await obs.until(lambda: availability() == [b"online", b"offline"])
        assert not dev.stats.connected
        await dev.start()  # same identifier: picks up its session again
        await obs.until(lambda: availability()[-1:] == [b"online"])
        await obs.command("L1", cmd("shed"))
        await obs.until(lambda: len(obs.acks()) == 1)
        await dev.stop()
        await obs.until(lambda: availability() == [b"online", b"offline", b"online", b"offline"])


async def test_device_resubscribes_after_broker_restart(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    b = mosquitto_broker
    async with SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=FakePark(clock), clock=clock) as dev:
        await b.arestart()
        deadline = time.monotonic() + 5
        while not (dev.stats.reconnects == 1 and dev.stats.connected):
            assert time.monotonic() < deadline, dev.stats
            await asyncio.sleep(0.005)
        async with observer(b) as obs:
            await obs.command("L1", cmd("shed"))
            await obs.until(lambda: len(obs.acks()) == 1)


async def test_group_start_stop(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    b = mosquitto_broker
    ids = ["chiller-1", "chiller-2", "furnace-1"]
    group = SimMqttLoads(b.host, b.port, site=SITE, load_ids=ids, park=FakePark(clock), clock=clock)
    async with observer(b) as obs:
        async with group:
            assert all(s.connected for s in group.stats.values())
            await clock.advance(T0 + 5 * S)
            await obs.until(lambda: all(len(obs.states(i)) == 2 for i in ids))
        await obs.until(lambda: all(obs.of(i, "availability")[-1].payload == b"offline" for i in ids))


async def test_group_start_times_out_without_broker() -> None:
    clock = SimClock(T0)
    group = SimMqttLoads("127.0.0.1", free_port(), site=SITE, load_ids=["L1"], park=FakePark(clock), clock=clock)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        await group.start(wait_connected_s=0.3)
    assert time.monotonic() - t < 2
    assert not group.devices["L1"]._tasks  # nothing left running


def test_rejects_bad_names_and_period() -> None:
    clock = SimClock(T0)
    with pytest.raises(ValueError, match="not usable"):
        SimMqttLoad("h", site=SITE, load_id="a/b", park=FakePark(clock), clock=clock)
    with pytest.raises(ValueError, match="period_s"):
        SimMqttLoad("h", site=SITE, load_id="L1", park=FakePark(clock), clock=clock, period_s=0)
