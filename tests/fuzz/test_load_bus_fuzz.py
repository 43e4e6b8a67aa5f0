"""The MQTT load bus fed garbage through a real broker: it counts and drops every bad message, stays
connected, and still takes the good report that follows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import topics as tp
from drivers.mqtt_load import MqttLoadBus
from parkctl.clock import SimClock
from sim.broker import PrivateMosquitto
from tests.conftest import private_broker
from tests.fuzz.test_topics_fuzz import payloads

SITE = "fuzz"
T0 = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
LOADS = ("L1", "sentinel")
DECODE = {"state": tp.StateReport.decode, "ack": tp.Ack.decode, "availability": tp.decode_availability}

message = st.tuples(
    st.sampled_from(sorted(DECODE)),
    st.sampled_from(["L1", "L9"]) | st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True),
    payloads,
)


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateMosquitto]:
    with private_broker() as b:  # one broker for the module: hypothesis runs many examples
        yield b


def expected_malformed(batch: list[tuple[str, str, bytes]]) -> int:
    bad = 0
    for kind, load_id, payload in batch:
        if load_id not in LOADS:
            bad += 1
            continue
        try:
            DECODE[kind](payload)
        except tp.PayloadError:
            bad += 1
    return bad


async def feed(broker: PrivateMosquitto, batch: list[tuple[str, str, bytes]]) -> MqttLoadBus:
    bus = MqttLoadBus(broker.host, broker.port, site=SITE, load_ids=LOADS, clock=SimClock(T0),
                      client_id=f"fuzz-{uuid.uuid4().hex[:8]}", log_every_s=60)  # fmt: skip
    async with bus, aiomqtt.Client(broker.host, broker.port) as pub:
        await bus.wait_connected(5)
        for kind, load_id, payload in batch:
            await pub.publish(f"park/{SITE}/load/{load_id}/{kind}", payload, qos=1)
        good = tp.StateReport(T0, 12.5, True, 1).encode()
        await pub.publish(tp.load_topic(SITE, "sentinel", "state"), good, qos=1)
        deadline = time.monotonic() + 5
        while bus.latest_load("sentinel") is None:  # ordered after the garbage: all of it is in
            assert time.monotonic() < deadline, f"the good report never arrived: {bus.stats}"
            await asyncio.sleep(0.01)
        assert bus.connected and bus.reconnects == 0
    return bus


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(message, min_size=1, max_size=12))
def test_bus_survives_garbage_and_counts_it(broker: PrivateMosquitto, batch: list[tuple[str, str, bytes]]) -> None:
    bus = asyncio.run(feed(broker, batch))
    stats = bus.stats
    assert stats.messages == len(batch) + 1
    assert stats.malformed_total == expected_malformed(batch)
    assert bus.latest_load("sentinel") is not None
