"""The shared MQTT reconnect loop against a real private Mosquitto: connect, backoff, reconnect, stop."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import pytest

from drivers.mqtt_session import MqttEndpoint, MqttSession
from sim.broker import PrivateMosquitto, free_port
from tests.drivers.test_mqtt_load import eventually

TOPIC = "test/session/status"


class Probe(MqttSession):
    """Says "online" on connect, then waits for the connection to drop; records every drop's backoff."""

    def __init__(self, endpoint: MqttEndpoint, backoff_s: tuple[float, float] = (0.05, 0.2)) -> None:
        super().__init__(endpoint, backoff_s=backoff_s, label="probe", task_name="probe")
        self.drops: list[tuple[float, int]] = []  # (delay, failures before this one)

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        await client.publish(TOPIC, b"online", qos=1, retain=True)

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass

    def _on_drop(self, exc: Exception, delay: float, failures: int) -> None:
        self.drops.append((delay, failures))
        super()._on_drop(exc, delay, failures)


def endpoint(port: int, **kw: object) -> MqttEndpoint:
    will = aiomqtt.Will(TOPIC, b"offline", qos=1, retain=True)
    return MqttEndpoint.of("127.0.0.1", port, {}, "session-test", will=will, **kw)


async def retained(broker: PrivateMosquitto) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port) as c:
        await c.subscribe(TOPIC, qos=1)
        async with asyncio.timeout(3):
            async for msg in c.messages:
                return bytes(msg.payload)
    raise AssertionError("nothing retained")


def test_endpoint_from_options() -> None:
    ep = MqttEndpoint.of("h", 1, {"username": "u", "keepalive_s": 5, "client_id": None}, "default-id")
    assert (ep.client_id, ep.username, ep.password, ep.keepalive_s) == ("default-id", "u", None, 5)
    assert ep.clean_session is False and ep.will is None
    assert MqttEndpoint.of("h", 1, {"client_id": "mine"}, "default-id").client_id == "mine"
    with pytest.raises(TypeError, match="user_name"):
        MqttEndpoint.of("h", 1, {"user_name": "u"}, "x")  # type: ignore[typeddict-unknown-key]


async def test_connects_and_says_offline_on_stop(mosquitto_broker: PrivateMosquitto) -> None:
    async with Probe(endpoint(mosquitto_broker.port)) as s:
        await s.wait_connected(3)
        assert s.connected and s.reconnects == 0 and s.drops == []
        assert s._client is not None and s._client.identifier == "session-test"
        assert await retained(mosquitto_broker) == b"online"
    assert not s.connected and not s._tasks
    assert await retained(mosquitto_broker) == b"offline"  # stop published the will itself


async def test_reconnects_after_broker_restart_with_capped_backoff(mosquitto_broker: PrivateMosquitto) -> None:
    b = mosquitto_broker
    async with Probe(endpoint(b.port, timeout_s=1.0), backoff_s=(0.05, 0.2)) as s:
        await s.wait_connected(3)
        await b.astop()
        await eventually(lambda: not s.connected)
        await eventually(lambda: len(s.drops) >= 5)  # failed attempts while the broker is down
        await b.astart()
        await eventually(lambda: s.connected and s.reconnects == 1, 5)
        delays = [d for d, _ in s.drops]
        assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == 0.2  # doubling, capped
        assert [f for _, f in s.drops] == list(range(len(s.drops)))  # one outage: failures count up
        await b.arestart()
        await eventually(lambda: s.connected and s.reconnects == 2, 5)
        assert s.drops[-1][0] == 0.05  # the backoff starts again after a good connection


async def test_unexpected_error_does_not_end_the_loop(mosquitto_broker: PrivateMosquitto) -> None:
    class Flaky(Probe):
        fail = 2

        async def _on_connect(self, client: aiomqtt.Client) -> None:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("bug")
            await super()._on_connect(client)

    async with Flaky(endpoint(mosquitto_broker.port)) as s:
        await s.wait_connected(3)
        assert s.fail == 0 and s.reconnects == 0  # failed set-ups are not connections


async def test_stop_is_prompt_without_broker() -> None:
    s = Probe(endpoint(free_port()), backoff_s=(0.05, 5.0))
    await s.start()
    with pytest.raises(TimeoutError):
        await s.wait_connected(0.3)
    t = time.monotonic()
    await s.stop()
    assert time.monotonic() - t < 0.5
    assert not s.connected and not s._tasks and s.reconnects == 0


async def test_closing_ends_the_loop_without_reconnecting(mosquitto_broker: PrivateMosquitto) -> None:
    s = Probe(endpoint(mosquitto_broker.port))
    await s.start()
    await s.wait_connected(3)
    s._closing = True
    await mosquitto_broker.arestart()
    await asyncio.wait(s._tasks, timeout=3)
    assert s._tasks[0].done() and not s.connected and s.reconnects == 0
    await s.stop()
