"""DR events over MQTT: the controller's listener (:class:`DrMqtt`) and the sender :func:`send_event`.

The controller subscribes ``park/{site}/dr/event`` (QoS 1) over its own session (fixed client id,
persistent session, so events sent while it was away arrive after a reconnect) and answers every
event on ``park/{site}/dr/ack`` (QoS 1, not retained). A malformed event is counted by reason and
logged; when its id can still be read it is refused with a "rejected" ack naming the reason. Events
are decided in arrival order, the ack published after the decision is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Unpack

import aiomqtt

from dr.event import DrAck
from dr.manager import DrManager
from dr.wire import EventError, decode_ack, decode_event, encode_ack, peek_event_id
from drivers import topics as tp
from drivers.mqtt_session import MqttEndpoint, MqttOptions, MqttSession
from drivers.mqtt_tls import TlsFiles
from drivers.mqtt_url import BrokerUrl
from parkctl.clock import Clock

log = logging.getLogger(__name__)


class DrMqtt(MqttSession):
    """Feeds events from the broker into a :class:`DrManager` and publishes its acks."""

    def __init__(self, host: str, port: int, *, site: str, manager: DrManager, clock: Clock,
                 backoff_s: tuple[float, float] = (0.05, 5.0), **conn: Unpack[MqttOptions]) -> None:  # fmt: skip
        self.site = tp.check_name(site, "site")
        super().__init__(MqttEndpoint.of(host, port, conn, f"parkctl-{site}-dr"), backoff_s=backoff_s,
                         label="MQTT DR", task_name=f"mqtt-dr-{site}", logger=log)  # fmt: skip
        self.manager, self.clock = manager, clock
        self.malformed: Counter[str] = Counter()  # reason code -> count
        self.received = 0
        self.acks_sent = 0

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe(tp.dr_event_topic(self.site), qos=1)

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
            try:
                ack = self.process(bytes(payload))
            except Exception:  # a bug or a store failure: no ack (the sender sees none), keep listening
                self.malformed["internal_error"] += 1
                log.exception("DR event could not be handled")
                continue
            if ack is not None:
                await client.publish(tp.dr_ack_topic(self.site), encode_ack(ack), qos=1, retain=False)
                self.acks_sent += 1

    def process(self, payload: bytes) -> DrAck | None:
        """Decode and decide one message; the ack to publish, None when nobody could be answered."""
        self.received += 1
        now = self.clock.now()
        try:
            spec = decode_event(payload)
        except EventError as exc:
            self.malformed[exc.reason] += 1
            log.warning("malformed DR event on %s: %s", tp.dr_event_topic(self.site), exc)
            peeked = peek_event_id(payload)
            if peeked is None:
                return None
            return self.manager.reject_malformed(peeked[0], peeked[1], exc.reason, exc.detail, now)
        return self.manager.handle(spec, now)


async def send_event(endpoint: MqttEndpoint, site: str, payload: bytes, event_id: str,
                     timeout_s: float) -> DrAck | None:  # fmt: skip
    """Publish one event (QoS 1) and wait up to ``timeout_s`` for its ack; None when none came.

    The ack topic is subscribed before the event goes out, so the answer cannot be missed. Raises
    ``aiomqtt.MqttError`` when the broker cannot be reached.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with endpoint.client() as client:
        await client.subscribe(tp.dr_ack_topic(site), qos=1)
        await client.publish(tp.dr_event_topic(site), payload, qos=1, retain=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                async for msg in client.messages:
                    raw = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
                    try:
                        ack = decode_ack(bytes(raw))
                    except EventError as exc:
                        log.warning("ignoring malformed ack: %s", exc)
                        continue
                    if ack.event_id == event_id:
                        return ack
    return None


def sender_endpoint(url: BrokerUrl, timeout_s: float = 5.0, *, ca_file: Path | None = None,
                    username: str | None = None, password: str | None = None) -> MqttEndpoint:  # fmt: skip
    """A one-shot client: its own random id and a clean session (nothing left behind on the broker).

    ``mqtts`` URLs verify the broker against ``ca_file`` (default: the system store), TLS 1.2 or later.
    """
    tls = TlsFiles(ca_file=ca_file).context("--ca-file") if url.tls else None
    return MqttEndpoint(url.host, url.port, f"parkctl-dr-send-{uuid.uuid4().hex[:8]}", username or url.username,
                        password or url.password, tls, timeout_s=timeout_s, clean_session=True)  # fmt: skip
