"""Simulated interruptible loads that speak the MQTT scheme of :mod:`drivers.topics` like field devices.

Each device has its own client (own identifier, persistent session, last will "offline" on its
availability topic), so killing one looks to the controller exactly like a device dropping off the
network. The park's physics stay in the park: a device only reads ``park.load_state`` and forwards
commands to ``park.request_shed`` / ``park.request_restore``.

State is published by an actor of the shared clock (``sleep_until(..., priority=0)``), so in a
simulated run each report is taken at a well-defined virtual instant. Commands are handled by the
connection task, which is not an actor: answering one never holds virtual time back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, Self, Unpack

import aiomqtt

from drivers import topics as tp
from drivers.mqtt_session import MqttEndpoint, MqttOptions, MqttSession
from parkctl.clock import Clock, ceil_to
from sim.state import CommandResult, LoadState

log = logging.getLogger(__name__)
_RECENT_COMMANDS = 256  # ids remembered to answer QoS-1 redeliveries without applying them twice


class LoadPark(Protocol):
    """What a device needs from the simulated park (``sim.park.Park`` provides it)."""

    def load_state(self, load_id: str) -> LoadState: ...

    def request_shed(self, load_id: str) -> CommandResult: ...

    def request_restore(self, load_id: str) -> CommandResult: ...


@dataclass(frozen=True, slots=True)
class DeviceStats:
    states_published: int
    publish_skipped: int  # periods with no connection, or a failed publish
    commands: int
    duplicate_commands: int
    malformed: Mapping[str, int]
    reconnects: int
    connected: bool
    commands_applied: int = 0  # commands handed to the park (not duplicates, not ignored)
    commands_ignored: int = 0  # received while a fault had the device ignore commands
    malformed_sent: int = 0  # malformed state payloads published on purpose (fault injection)


class SimMqttLoad(MqttSession):
    """One simulated load behind its own MQTT client."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        site: str,
        load_id: str,
        park: LoadPark,
        clock: Clock,
        period_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        publish_timeout_s: float = 2.0,
        **conn: Unpack[MqttOptions],
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.id = tp.check_name(load_id, "load id")
        self._site = tp.check_name(site, "site")
        self._park, self._clock = park, clock
        self._period = timedelta(seconds=period_s)
        will = aiomqtt.Will(self._topic("availability"), tp.OFFLINE, qos=1, retain=True)
        super().__init__(
            MqttEndpoint.of(host, port, conn, f"parkctl-{site}-load-{load_id}", will=will),
            backoff_s=backoff_s, label=f"sim load {self.id}", task_name=f"mqtt-dev-{self.id}", logger=log,
        )  # fmt: skip
        self._publish_timeout_s = publish_timeout_s
        self._seq = 0
        self._recent: OrderedDict[str, tp.Ack] = OrderedDict()
        self._n: Counter[str] = Counter()
        self._malformed: Counter[str] = Counter()
        # fault injection (sim.fault_inject): ignore commands (no ack, nothing applied) / publish garbage
        self.ignore_commands = False
        self.malformed_state = False

    def _topic(self, kind: tp.Kind) -> str:
        return tp.load_topic(self._site, self.id, kind)

    @property
    def stats(self) -> DeviceStats:
        n = self._n
        return DeviceStats(
            states_published=n["states_published"], publish_skipped=n["publish_skipped"],
            commands=n["commands"], duplicate_commands=n["duplicate_commands"],
            malformed=MappingProxyType(dict(self._malformed)), reconnects=self.reconnects,
            connected=self.connected, commands_applied=n["commands_applied"],
            commands_ignored=n["commands_ignored"], malformed_sent=n["malformed_sent"],
        )  # fmt: skip

    # -- lifecycle: stop (says "offline"), wait_connected and async with are MqttSession's ---------------
    async def start(self, wait_connected_s: float | None = 5.0) -> None:
        """Connect, then begin publishing; TimeoutError if not connected within ``wait_connected_s``."""
        if self._tasks:
            return
        await super().start()
        if wait_connected_s is not None:
            try:
                await self.wait_connected(wait_connected_s)
            except TimeoutError:
                await self._cancel()
                raise
        self._tasks.append(asyncio.create_task(self._publisher(), name=f"mqtt-dev-{self.id}-pub"))

    async def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, like a power cut: the broker fires the will."""
        client = self._client
        if client is not None:
            sock = client._client.socket()  # paho's socket; aiomqtt offers no public way to do this
            if isinstance(sock, socket.socket):
                self._closing = True  # let the connection task see the loss itself, then end
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                await asyncio.wait(self._tasks[:1], timeout=2)
        await self._cancel()

    # -- tasks ---------------------------------------------------------------------------------------
    async def _on_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self._topic("cmd"), qos=1)
        await client.publish(self._topic("availability"), tp.ONLINE, qos=1, retain=True)

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            await self._on_command(client, msg.payload)

    def _on_drop(self, exc: Exception, delay: float, failures: int) -> None:
        log.info("sim load %s: MQTT connection lost (%s); retrying in %.2f s", self.id, exc, delay)

    async def _publisher(self) -> None:
        nxt = ceil_to(self._clock.now(), self._period)
        while True:
            await self._clock.sleep_until(nxt, priority=0)
            await self.publish_state()
            nxt = max(nxt + self._period, ceil_to(self._clock.now(), self._period))

    async def publish_state(self) -> bool:
        """Publish the park's current state of this load now (QoS 1, retained); False if it could not."""
        client = self._client
        if client is None:
            self._n["publish_skipped"] += 1
            return False
        if self.malformed_state:
            return await self._publish_malformed(client)
        try:
            state = self._park.load_state(self.id)
            self._seq += 1
            report = tp.StateReport(ts=state.ts, p_kw=state.p_kw, running=state.running, seq=self._seq)
            await client.publish(self._topic("state"), report.encode(), qos=1, retain=True,
                                 timeout=self._publish_timeout_s)  # fmt: skip
        except aiomqtt.MqttError as exc:
            log.info("sim load %s: state not published: %s", self.id, exc)
            self._n["publish_skipped"] += 1
            return False
        except Exception:  # a bug in the park must not kill the device task
            log.exception("sim load %s: park.load_state failed", self.id)
            self._n["publish_skipped"] += 1
            return False
        self._n["states_published"] += 1
        return True

    async def _publish_malformed(self, client: aiomqtt.Client) -> bool:
        """A state payload no controller can accept (fault injection): a report with its fields mangled."""
        self._seq += 1
        payload = b'{"ts": "not a time", "p_kw": "NaN", "seq": %d' % self._seq  # truncated JSON, too
        try:
            await client.publish(self._topic("state"), payload, qos=1, retain=True, timeout=self._publish_timeout_s)
        except aiomqtt.MqttError:
            self._n["publish_skipped"] += 1
            return False
        self._n["malformed_sent"] += 1
        return True

    async def _on_command(self, client: aiomqtt.Client, payload: object) -> None:
        if self.ignore_commands:
            self._n["commands_ignored"] += 1
            return
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        try:
            cmd = tp.Command.decode(data)
        except tp.PayloadError as exc:
            self._malformed[exc.reason] += 1
            cmd_id = tp.peek_command_id(data)
            log.warning("sim load %s: malformed command (%s)%s", self.id, exc, "" if cmd_id else ", ignored")
            if cmd_id is not None:
                await self._ack(client, tp.Ack(cmd_id, False, f"malformed command: {exc}", self._clock.now()))
            return
        self._n["commands"] += 1
        ack = self._recent.get(cmd.id)
        if ack is not None:
            self._n["duplicate_commands"] += 1
            await self._ack(client, ack)
            return
        apply = self._park.request_shed if cmd.action == "shed" else self._park.request_restore
        self._n["commands_applied"] += 1
        try:
            result = apply(self.id)
        except Exception as exc:  # report the failure to the controller rather than crash
            log.exception("sim load %s: park refused %s with an error", self.id, cmd.action)
            result = CommandResult(accepted=False, reason=f"device error: {exc}")
        ack = tp.Ack(cmd.id, result.accepted, result.reason, self._clock.now())
        self._recent[cmd.id] = ack
        while len(self._recent) > _RECENT_COMMANDS:
            self._recent.popitem(last=False)
        await self._ack(client, ack)
        await self.publish_state()

    async def _ack(self, client: aiomqtt.Client, ack: tp.Ack) -> None:
        await client.publish(self._topic("ack"), ack.encode(), qos=1)


class SimMqttLoads:
    """All simulated MQTT loads of a park, started and stopped together."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        site: str,
        load_ids: Iterable[str],
        park: LoadPark,
        clock: Clock,
        period_s: float = 5.0,
        **device_kw: Any,
    ) -> None:
        self.devices: Mapping[str, SimMqttLoad] = MappingProxyType({
            i: SimMqttLoad(host, port, site=site, load_id=i, park=park, clock=clock, period_s=period_s,
                           **device_kw)
            for i in load_ids
        })  # fmt: skip

    @property
    def stats(self) -> Mapping[str, DeviceStats]:
        return {i: d.stats for i, d in self.devices.items()}

    async def start(self, wait_connected_s: float | None = 5.0) -> None:
        try:
            await asyncio.gather(*(d.start(wait_connected_s) for d in self.devices.values()))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.devices.values()))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
