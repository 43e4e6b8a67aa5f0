"""The controller's MQTT load bus against a real private Mosquitto: commands, acks, staleness, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from drivers import topics as tp
from drivers.capabilities import ControllableLoad
from drivers.mqtt_load import MqttLoadBus
from parkctl.clock import SimClock
from parkctl.errors import BrokerUnavailable
from sim.broker import PrivateMosquitto
from sim.mqtt_devices import SimMqttLoad, SimMqttLoads
from sim.state import CommandResult, LoadState

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 15, 14, 0, tzinfo=TZ)
SITE = "zixing-pilot"
S = timedelta(seconds=1)


class ManualClock:
    """Time that moves only when the test calls ``set``."""

    def __init__(self, t: datetime) -> None:
        self.t = t
        self._moved: list[asyncio.Event] = []

    def now(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t
        for ev in self._moved:
            ev.set()
        self._moved.clear()

    async def sleep_until(self, when: datetime, *, priority: int = 100, wake: asyncio.Event | None = None) -> None:
        while self.t < when and not (wake is not None and wake.is_set()):
            ev = asyncio.Event()
            self._moved.append(ev)
            await ev.wait()

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class FakePark:
    """Just enough of sim.park.Park: a load that can be shed once and restored."""

    def __init__(self, clock: SimClock | ManualClock, refuse: str = "") -> None:
        self.clock = clock
        self.running: dict[str, bool] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse

    def load_state(self, load_id: str) -> LoadState:
        running = self.running.get(load_id, True)
        return LoadState(self.clock.now(), 100.0 if running else 0.0, running, None, 0)

    def _apply(self, load_id: str, action: str, running: bool) -> CommandResult:
        self.calls.append((load_id, action))
        if self.refuse:
            return CommandResult(False, self.refuse)
        self.running[load_id] = running
        return CommandResult(True, "")

    def request_shed(self, load_id: str) -> CommandResult:
        return self._apply(load_id, "shed", False)

    def request_restore(self, load_id: str) -> CommandResult:
        return self._apply(load_id, "restore", True)


async def eventually(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait (bounded) for a condition that a message from the broker will make true."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def raw_client(broker: PrivateMosquitto) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port) as c:
        yield c


def make_bus(broker: PrivateMosquitto, clock: object, loads: tuple[str, ...] = ("L1",), **kw: object) -> MqttLoadBus:
    kw.setdefault("ack_timeout_s", 3.0)
    return MqttLoadBus(broker.host, broker.port, site=SITE, load_ids=loads, clock=clock, **kw)  # type: ignore[arg-type]


# -- topic scheme and payload codecs -------------------------------------------------------------------


def test_topics_and_names() -> None:
    assert tp.load_topic(SITE, "chiller-1", "state") == "park/zixing-pilot/load/chiller-1/state"
    assert tp.load_wildcard(SITE, "ack") == "park/zixing-pilot/load/+/ack"
    assert tp.controller_status_topic(SITE) == "park/zixing-pilot/controller/status"
    assert tp.parse_load_topic(SITE, "park/zixing-pilot/load/L1/cmd") == ("L1", "cmd")
    assert tp.parse_load_topic(SITE, "park/other/load/L1/cmd") is None
    assert tp.parse_load_topic(SITE, "park/zixing-pilot/load/L1/bogus") is None
    assert tp.SCHEME["state"].retain and not tp.SCHEME["cmd"].retain
    for bad in ("", "a/b", "+", "#", "a b", "x" * 65):
        with pytest.raises(ValueError, match="not usable"):
            tp.load_topic(SITE, bad, "state")


def test_payload_round_trip_and_extra_keys() -> None:
    r = tp.StateReport(T0, 12.5, True, 7)
    assert tp.StateReport.decode(r.encode()) == r
    c = tp.Command("0b4e", "shed", T0)
    assert tp.Command.decode(c.encode()) == c
    a = tp.Ack("0b4e", False, "min on time", T0)
    assert tp.Ack.decode(a.encode()) == a
    newer_firmware = json.dumps({"ts": T0.isoformat(), "p_kw": 1, "running": False, "seq": 0, "v": 2})
    assert tp.StateReport.decode(newer_firmware.encode()).p_kw == 1.0
    assert tp.decode_availability(b"online") and not tp.decode_availability(b"offline")


GOOD = {"ts": T0.isoformat(), "p_kw": 1.5, "running": True, "seq": 1}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (json.dumps({**GOOD, "p_kw": "1.5"}).encode(), "bad_type"),
        (json.dumps({**GOOD, "p_kw": True}).encode(), "bad_type"),
        (json.dumps({**GOOD, "running": 1}).encode(), "bad_type"),
        (json.dumps({**GOOD, "seq": 1.0}).encode(), "bad_type"),
        (json.dumps({**GOOD, "seq": -1}).encode(), "bad_value"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "running"}).encode(), "missing_field"),
        (b'{"ts": "2026-07-15T14:00:00+08:00", "p_kw": NaN, "running": true, "seq": 1}', "not_finite"),
        (b'{"ts": "2026-07-15T14:00:00+08:00", "p_kw": -Infinity, "running": true, "seq": 1}', "not_finite"),
        (b'{"ts": "2026-07-15T14:00:00+08:00", "p_kw": 1e400, "running": true, "seq": 1}', "not_finite"),
        (json.dumps({**GOOD, "ts": "2026-07-15T14:00:00"}).encode(), "bad_ts"),
        (json.dumps({**GOOD, "ts": "yesterday"}).encode(), "bad_ts"),
        (json.dumps({**GOOD, "pad": "x" * 5000}).encode(), "too_large"),
    ],
)
def test_state_decoder_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(tp.PayloadError) as info:
        tp.StateReport.decode(payload)
    assert info.value.reason == reason


def test_command_decoder_and_peek_id() -> None:
    bad = json.dumps({"id": "abc", "action": "explode", "ts": T0.isoformat()}).encode()
    with pytest.raises(tp.PayloadError, match="action"):
        tp.Command.decode(bad)
    assert tp.peek_command_id(bad) == "abc"
    assert tp.peek_command_id(b"garbage") is None
    assert tp.peek_command_id(json.dumps({"id": ""}).encode()) is None
    with pytest.raises(tp.PayloadError):
        tp.decode_availability(b"maybe")


# -- the bus against a broker --------------------------------------------------------------------------


async def test_shed_restore_round_trip_and_lock_step_state(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)  # this test is now an actor: virtual time moves only when it says so
    park = FakePark(clock)
    b = mosquitto_broker
    async with (
        make_bus(b, clock, ("L1", "L2")) as bus,
        SimMqttLoads(b.host, b.port, site=SITE, load_ids=["L1", "L2"], park=park, clock=clock, period_s=5),
    ):
        await bus.wait_connected(3)
        load = bus.loads["L1"]
        assert isinstance(load, ControllableLoad)
        await clock.advance(T0 + 5 * S)
        reading = await bus.wait_for_state("L1", T0 + 5 * S, timeout_s=3)
        assert reading.ts == T0 + 5 * S and reading.running and reading.p_kw == 100.0
        assert load.latest_load() == reading

        outcome = await load.shed()
        assert (outcome.acked, outcome.accepted) == (True, True)
        await eventually(lambda: (r := load.latest_load()) is not None and not r.running)
        assert park.calls == [("L1", "shed")]
        outcome = await bus.loads["L2"].restore()
        assert outcome.acked and outcome.accepted
        park.refuse = "min off time not reached"
        outcome = await load.restore()
        assert (outcome.acked, outcome.accepted, outcome.reason) == (True, False, "min off time not reached")

        st = bus.stats
        assert (st.commands_sent, st.acks, st.ack_timeouts, st.malformed_total) == (3, 3, 0, 0)
        assert st.connected and st.reconnects == 0


async def test_ack_timeout_when_device_is_silent(mosquitto_broker: PrivateMosquitto) -> None:
    async with make_bus(mosquitto_broker, ManualClock(T0), ack_timeout_s=0.2) as bus:
        await bus.wait_connected(3)
        t = time.monotonic()
        outcome = await bus.loads["L1"].shed()
        assert 0.15 < time.monotonic() - t < 1.0
        assert (outcome.acked, outcome.accepted) == (False, False)
        assert "no ack from the device" in outcome.reason
        assert (bus.stats.commands_sent, bus.stats.ack_timeouts, bus.stats.acks) == (1, 1, 0)


async def test_no_broker_yet_commands_fail_cleanly_then_bus_connects() -> None:
    try:
        broker = PrivateMosquitto()  # port chosen now, broker started later
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        async with make_bus(broker, ManualClock(T0), ack_timeout_s=0.2, backoff_s=(0.02, 0.1)) as bus:
            outcome = await bus.loads["L1"].shed()
            assert (outcome.acked, outcome.reason) == (False, "no broker connection within 0.2 s")
            assert (bus.stats.command_failures, bus.stats.commands_sent, bus.stats.connected) == (1, 0, False)
            await broker.astart()
            await bus.wait_connected(3)
            assert bus.stats.reconnects == 0  # the first successful connection is not a reconnect
    finally:
        broker.close()


async def test_malformed_messages_are_counted_and_ignored(mosquitto_broker: PrivateMosquitto) -> None:
    clock = ManualClock(T0)
    async with make_bus(mosquitto_broker, clock) as bus, raw_client(mosquitto_broker) as dev:
        await bus.wait_connected(3)
        state = tp.load_topic(SITE, "L1", "state")
        good = json.dumps(GOOD)
        junk: list[tuple[str, str | bytes]] = [
            (state, b"{oops"),
            (state, b'{"ts": "2026-07-15T14:00:00+08:00", "p_kw": NaN, "running": true, "seq": 1}'),
            (state, json.dumps({**GOOD, "running": "yes"})),
            (state, json.dumps({"p_kw": 1})),
            (state, b"x" * 10_000),
            (tp.load_topic(SITE, "ghost", "state"), good),
            (tp.load_topic(SITE, "L1", "availability"), b"perhaps"),
            (
                tp.load_topic(SITE, "L1", "ack"),
                json.dumps({"id": "x", "accepted": "yes", "reason": "", "ts": T0.isoformat()}),
            ),
        ]
        for topic, payload in junk:
            await dev.publish(topic, payload, qos=1)
        await dev.publish(state, good, qos=1)
        reading = await bus.wait_for_state("L1", T0, timeout_s=3)
        assert reading.p_kw == 1.5
        # a late ack for a command nobody waits for is not malformed, just counted
        ack = tp.Ack("expired-cmd", True, "", T0)
        await dev.publish(tp.load_topic(SITE, "L1", "ack"), ack.encode(), qos=1)
        await eventually(lambda: bus.stats.late_acks == 1)
        st = bus.stats
        assert dict(st.malformed) == {
            "bad_json": 1, "not_finite": 1, "bad_type": 2, "missing_field": 1, "too_large": 1,
            "unknown_load": 1, "bad_value": 1,
        }  # fmt: skip
        assert st.messages == len(junk) + 2 and st.connected


async def test_latest_load_none_when_report_too_old(mosquitto_broker: PrivateMosquitto) -> None:
    clock = ManualClock(T0)
    async with make_bus(mosquitto_broker, clock, max_age=timedelta(seconds=30)) as bus:
        await bus.wait_connected(3)
        async with raw_client(mosquitto_broker) as dev:
            await dev.publish(tp.load_topic(SITE, "L1", "state"), tp.StateReport(T0, 5, True, 1).encode(), qos=1)
        await bus.wait_for_state("L1", T0, timeout_s=3)
        clock.set(T0 + 30 * S)
        assert bus.loads["L1"].latest_load() is not None
        clock.set(T0 + 31 * S)
        assert bus.loads["L1"].latest_load() is None
        with pytest.raises(TimeoutError):
            await bus.wait_for_state("L1", T0 + S, timeout_s=0.05)


async def test_latest_load_none_when_device_will_fires(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=FakePark(clock), clock=clock, keepalive_s=5)
    async with make_bus(b, clock) as bus:
        await dev.start()
        await clock.advance(T0 + 5 * S)
        await bus.wait_for_state("L1", T0 + 5 * S, timeout_s=3)
        assert bus.loads["L1"].latest_load() is not None
        await dev.kill()  # no DISCONNECT: the broker publishes the will, "offline"
        await eventually(lambda: bus.loads["L1"].latest_load() is None)
        await dev.start()  # back online: the retained state is trusted again
        await eventually(lambda: bus.loads["L1"].latest_load() is not None)
        await dev.stop()


async def test_broker_restart_bus_and_device_reconnect(mosquitto_broker: PrivateMosquitto) -> None:
    clock = SimClock(T0)
    await clock.advance(T0)
    park = FakePark(clock)
    b = mosquitto_broker
    async with (
        make_bus(b, clock) as bus,
        SimMqttLoads(b.host, b.port, site=SITE, load_ids=["L1"], park=park, clock=clock) as devs,
    ):
        await bus.wait_connected(3)
        await b.arestart()
        await eventually(lambda: bus.stats.reconnects == 1 and bus.stats.connected, 5)
        await eventually(lambda: devs.stats["L1"].reconnects == 1 and devs.stats["L1"].connected, 5)
        await clock.advance(T0 + 10 * S)
        reading = await bus.wait_for_state("L1", T0 + 10 * S, timeout_s=3)
        assert reading.ts == T0 + 10 * S
        outcome = await bus.loads["L1"].shed()
        assert outcome.acked and outcome.accepted


async def test_command_queued_while_device_offline_is_delivered_on_reconnect(
    mosquitto_broker: PrivateMosquitto,
) -> None:
    clock = ManualClock(T0)
    park = FakePark(clock)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=park, clock=clock)
    async with make_bus(b, clock, ack_timeout_s=5) as bus:
        await dev.start(wait_connected_s=3)  # first connect: the broker now holds the device's session
        await dev.stop()
        shed = asyncio.create_task(bus.loads["L1"].shed())
        await eventually(lambda: bus.stats.commands_sent == 1)  # PUBACKed: queued in the device's session
        await dev.start(wait_connected_s=3)
        outcome = await shed
        assert (outcome.acked, outcome.accepted) == (True, True)
        assert park.calls == [("L1", "shed")]
        await dev.stop()


async def test_command_queued_while_device_offline_survives_broker_restart(
    mosquitto_broker: PrivateMosquitto,
) -> None:
    clock = ManualClock(T0)
    park = FakePark(clock)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=park, clock=clock)
    async with make_bus(b, clock, ack_timeout_s=8) as bus:
        await dev.start(wait_connected_s=3)
        await dev.stop()
        shed = asyncio.create_task(bus.loads["L1"].shed())
        await eventually(lambda: bus.stats.commands_sent == 1)
        await b.arestart()  # Mosquitto writes the queued command to its persistence file and reloads it
        await dev.start(wait_connected_s=3)
        outcome = await shed
        assert (outcome.acked, outcome.accepted) == (True, True)
        assert park.calls == [("L1", "shed")]
        await eventually(lambda: bus.stats.reconnects == 1)
        await dev.stop()


async def test_round_trip_latency(mosquitto_broker: PrivateMosquitto) -> None:
    clock = ManualClock(T0)
    b = mosquitto_broker
    dev = SimMqttLoad(b.host, b.port, site=SITE, load_id="L1", park=FakePark(clock), clock=clock)
    async with make_bus(b, clock) as bus:
        await dev.start(wait_connected_s=3)
        await bus.wait_connected(3)
        samples = []
        for i in range(100):
            t = time.perf_counter()
            outcome = await (bus.loads["L1"].shed() if i % 2 == 0 else bus.loads["L1"].restore())
            samples.append((time.perf_counter() - t) * 1000)
            assert outcome.accepted
        await dev.stop()
    median = statistics.median(samples)
    print(f"\ncommand->ack round trip over loopback: median {median:.2f} ms, "
          f"p90 {statistics.quantiles(samples, n=10)[-1]:.2f} ms, max {max(samples):.2f} ms")  # fmt: skip
    assert median < 30  # ~1 ms with TCP_NODELAY; Nagle + delayed ACK would show as ~40-90 ms
