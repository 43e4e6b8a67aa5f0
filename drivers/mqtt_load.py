"""Interruptible loads reached over MQTT: one broker connection for the controller, one object per load.

:class:`MqttLoadBus` owns a single connection (fixed client id, persistent session, QoS 1) and keeps it
up with a capped-backoff reconnect loop that subscribes again after every connect. Its last will marks
``controller/status`` "offline" (retained); it publishes "online" (retained) after each connect. The
bus keeps the latest valid state report of every load; :class:`MqttLoad` is the per-load
:class:`~drivers.capabilities.ControllableLoad` view on it. Anything malformed is counted, logged at
most every few seconds per reason, and dropped: a misbehaving device must never take the controller down.

A fresh ``aiomqtt.Client`` is built for each connection attempt (aiomqtt issues #288, #269). The broker keeps our
session (subscriptions and queued QoS-1 messages) because the identifier is fixed and clean_session off.
The connection loop and lifecycle are :class:`drivers.mqtt_session.MqttSession`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Unpack

import aiomqtt

from drivers import topics as tp
from drivers.capabilities import CommandOutcome, LoadReading
from drivers.mqtt_session import NODELAY as NODELAY  # re-exported for older imports
from drivers.mqtt_session import MqttEndpoint, MqttOptions, MqttSession, describe_failure, login_refused
from drivers.mqtt_session import cancel_and_wait as cancel_and_wait
from parkctl.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BusStats:
    messages: int
    malformed: Mapping[str, int]  # reason code -> count
    commands_sent: int
    acks: int
    ack_timeouts: int  # published, but the device did not answer in time
    command_failures: int  # not sent: no broker connection, or no PUBACK in time
    late_acks: int  # acks for a command nobody waits for any more (timed out, or another controller's)
    reconnects: int
    connected: bool

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


class _RateLimitedLog:
    """One warning per reason per ``every_s`` wall seconds, with the count of those held back."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def warning(self, reason: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) < self._every_s:
            self._held[reason] += 1
            return
        self._last[reason] = now
        held = self._held.pop(reason, 0)
        log.warning(msg + (f" ({held} similar suppressed)" if held else ""), *args)


class MqttLoadBus(MqttSession):
    """The controller's MQTT connection for every interruptible load of one site."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        site: str,
        load_ids: Iterable[str],
        clock: Clock,
        max_age: timedelta = timedelta(seconds=30),
        ack_timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        log_every_s: float = 10.0,
        **conn: Unpack[MqttOptions],
    ) -> None:
        self.site = tp.check_name(site, "site")
        ids = [tp.check_name(i, "load id") for i in load_ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate load ids in {ids}")
        self._status_topic = tp.controller_status_topic(site)
        will = aiomqtt.Will(self._status_topic, tp.OFFLINE, qos=1, retain=True)
        super().__init__(
            MqttEndpoint.of(host, port, conn, f"parkctl-{site}-controller", will=will),
            backoff_s=backoff_s, label="MQTT bus", task_name=f"mqtt-bus-{site}", logger=log,
        )  # fmt: skip
        self._clock = clock
        self._max_age = max_age
        self._ack_timeout_s = ack_timeout_s
        self._rlog = _RateLimitedLog(log_every_s)
        self.loads: Mapping[str, MqttLoad] = MappingProxyType({i: MqttLoad(self, i) for i in ids})
        self._latest: dict[str, tp.StateReport] = {}
        self._online: dict[str, bool] = {}
        self._waiters: dict[str, list[tuple[datetime, asyncio.Future[tp.StateReport]]]] = {}
        self._pending: dict[str, tuple[str, asyncio.Future[tp.Ack]]] = {}
        self._malformed: Counter[str] = Counter()
        self._n = Counter[str]()

    # -- lifecycle: start/stop/wait_connected/async with are MqttSession's; stop says "offline" (will) ----
    @property
    def stats(self) -> BusStats:
        n = self._n
        return BusStats(
            messages=n["messages"], malformed=MappingProxyType(dict(self._malformed)),
            commands_sent=n["commands_sent"], acks=n["acks"], ack_timeouts=n["ack_timeouts"],
            command_failures=n["command_failures"],
            late_acks=n["late_acks"], reconnects=self.reconnects, connected=self.connected,
        )  # fmt: skip

    # -- connection ----------------------------------------------------------------------------------
    async def _on_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(tp.load_wildcard(self.site, k), 1) for k in _SUBSCRIBED])
        await client.publish(self._status_topic, tp.ONLINE, qos=1, retain=True)

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            self._on_message(msg.topic.value, msg.payload)

    def _on_drop(self, exc: Exception, delay: float, failures: int) -> None:
        ep, why = self._endpoint, describe_failure(exc)
        if login_refused(exc) and not failures:  # once per outage, whatever the rate limit
            log.error("MQTT bus %s:%d: %s; retrying every %.0f s", ep.host, ep.port, why, delay)
            return
        self._rlog.warning("connection", "MQTT bus %s:%d: %s; retrying in %.2f s", ep.host, ep.port, why, delay)

    def _on_message(self, topic: str, payload: object) -> None:
        self._n["messages"] += 1
        payload = _as_bytes(payload)
        parsed = tp.parse_load_topic(self.site, topic)
        if parsed is None:
            return self._bad("unknown_topic", topic, "not a load topic of this site")
        load_id, kind = parsed
        if load_id not in self.loads:
            return self._bad("unknown_load", topic, f"load {load_id!r} is not configured")
        try:
            if kind == "state":
                self._on_state(load_id, tp.StateReport.decode(payload))
            elif kind == "ack":
                self._on_ack(load_id, tp.Ack.decode(payload))
            elif kind == "availability":
                self._online[load_id] = tp.decode_availability(payload)
        except tp.PayloadError as exc:
            self._bad(exc.reason, topic, str(exc))

    def _bad(self, reason: str, topic: str, detail: str) -> None:
        self._malformed[reason] += 1
        self._rlog.warning(reason, "dropped MQTT message on %s: %s", topic, detail)

    def _on_state(self, load_id: str, report: tp.StateReport) -> None:
        old = self._latest.get(load_id)
        if old is not None and report.ts < old.ts:
            return  # an older retained copy re-sent on subscribe; keep the newer one
        self._latest[load_id] = report
        waiters = self._waiters.get(load_id, [])
        for at_least, fut in waiters:
            if report.ts >= at_least and not fut.done():
                fut.set_result(report)
        self._waiters[load_id] = [(t, f) for t, f in waiters if not f.done()]

    def _on_ack(self, load_id: str, ack: tp.Ack) -> None:
        pending = self._pending.get(ack.id)
        if pending is None or pending[1].done():
            self._n["late_acks"] += 1
            return
        if pending[0] != load_id:
            return self._bad("ack_wrong_load", load_id, f"ack {ack.id} came from the wrong load")
        self._n["acks"] += 1
        pending[1].set_result(ack)

    # -- per-load API --------------------------------------------------------------------------------
    def latest_load(self, load_id: str) -> LoadReading | None:
        """Last valid report, unless the device said it is offline or the report is older than max_age."""
        report = self._latest.get(load_id)
        if report is None or not self._online.get(load_id, True):
            return None
        if self._clock.now() - report.ts > self._max_age:
            return None
        return LoadReading(ts=report.ts, p_kw=report.p_kw, running=report.running, online=True)

    async def wait_for_state(self, load_id: str, at_least: datetime, timeout_s: float) -> LoadReading:
        """Return once a state report stamped ``at_least`` or later is in; TimeoutError otherwise."""
        if load_id not in self.loads:
            raise KeyError(f"unknown load {load_id!r}")
        report = self._latest.get(load_id)
        if report is None or report.ts < at_least:
            fut: asyncio.Future[tp.StateReport] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(load_id, []).append((at_least, fut))
            try:
                report = await asyncio.wait_for(fut, timeout_s)
            finally:
                self._waiters[load_id] = [(t, f) for t, f in self._waiters[load_id] if f is not fut]
        return LoadReading(ts=report.ts, p_kw=report.p_kw, running=report.running, online=True)

    async def command(self, load_id: str, action: tp.Action) -> CommandOutcome:
        """Publish a command and wait (wall clock, ``ack_timeout_s`` in all) for the matching ack.

        Waits use deadlines and ``asyncio.wait`` rather than cancellation: on 3.11 a cancellation that
        lands just as aiomqtt's internal ``wait_for`` completes is swallowed, which could leave a
        command waiting for ever.
        """
        if load_id not in self.loads:
            raise KeyError(f"unknown load {load_id!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_timeout_s
        within = f"within {self._ack_timeout_s:g} s"
        if not self._connected.is_set():
            waiter = asyncio.ensure_future(self._connected.wait())
            await asyncio.wait({waiter}, timeout=self._ack_timeout_s)
            waiter.cancel()
        client = self._client
        if client is None:
            self._n["command_failures"] += 1
            return CommandOutcome(acked=False, accepted=False, reason=f"no broker connection {within}")
        cmd = tp.Command(id=str(uuid.uuid4()), action=action, ts=self._clock.now())
        fut: asyncio.Future[tp.Ack] = loop.create_future()
        self._pending[cmd.id] = (load_id, fut)
        try:
            topic = tp.load_topic(self.site, load_id, "cmd")
            await client.publish(topic, cmd.encode(), qos=1, timeout=max(deadline - loop.time(), 0.01))
            self._n["commands_sent"] += 1
            await asyncio.wait({fut}, timeout=max(deadline - loop.time(), 0.0))
        except aiomqtt.MqttError as exc:
            self._n["command_failures"] += 1
            return CommandOutcome(acked=False, accepted=False, reason=f"publish failed: {exc}")
        finally:
            del self._pending[cmd.id]
        if not fut.done():
            self._n["ack_timeouts"] += 1
            return CommandOutcome(acked=False, accepted=False, reason=f"no ack from the device {within}")
        ack = fut.result()
        return CommandOutcome(acked=True, accepted=ack.accepted, reason=ack.reason)


_SUBSCRIBED: tuple[tp.Kind, ...] = ("state", "ack", "availability")


def _as_bytes(payload: object) -> bytes:
    """aiomqtt hands over bytes; the declared type is wider, so narrow it once here."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


class MqttLoad:
    """One interruptible load as a :class:`~drivers.capabilities.ControllableLoad`."""

    def __init__(self, bus: MqttLoadBus, load_id: str) -> None:
        self.id = load_id
        self._bus = bus

    def latest_load(self) -> LoadReading | None:
        return self._bus.latest_load(self.id)

    async def shed(self) -> CommandOutcome:
        return await self._bus.command(self.id, "shed")

    async def restore(self) -> CommandOutcome:
        return await self._bus.command(self.id, "restore")
