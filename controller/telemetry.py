"""The controller's own MQTT telemetry: measurements, state and plan, without ever slowing the cycle.

Topics, under ``park/{site}/controller/`` (see :mod:`drivers.topics` for the device side):

================  ===  ======  =======================================  =============================================
topic             QoS  retain  when                                     payload (JSON)
================  ===  ======  =======================================  =============================================
``measurements``  0    no      every ``every_cycles`` cycles or         {"ts", "grid_kw", "pv_kw", "battery_kw",
                               ``every_s`` seconds of the clock         "load_kw", "complete", "reason",
                                                                        "pv": {id: {"p_kw", "limit_kw"}},
                                                                        "batteries": {id: {"p_kw", "soc_pct",
                                                                        "setpoint_kw"}}, "loads": {id: {"p_kw",
                                                                        "running", "shed"}}}
``state``         1    yes     when strategy, optimiser status, plan,   {"ts", "strategy", "optimizer_status",
                               fallback or alarms change; on reconnect  "plan_ts", "plan_age_s", "fallback_active",
                                                                        "alarms": count, "alarm_codes": [str]}
``plan``          1    yes     when :meth:`publish_plan` gets a new     the summary as given (NaN/inf become null,
                               summary; on reconnect                    datetimes ISO-8601)
``alarm``         1    no      :meth:`publish_event` ("alarm"): each    {"ts", "state": "raised"|"cleared", "code",
                               alarm raised or cleared, in order        "device", "message"} (controller.alarms)
``status``        1    yes     not here: :class:`drivers.mqtt_load.MqttLoadBus` owns it (last will)
================  ===  ======  =======================================  =============================================

A value the cycle could not read is ``null``, never the last number seen; park totals are ``null``
unless every device in them was read. ``plan_age_s`` is the age when the state was published; use
``plan_ts`` for the current age (a retained message is not refreshed every second).

:meth:`on_cycle` is synchronous and cheap: it encodes and enqueues. Measurements go into a bounded
``asyncio.Queue``; when it is full the oldest is dropped and counted (fresh data matters more than
complete history). Retained topics are not queued but kept as "latest value" slots, so a burst of
measurements can never push out a state change. A background task publishes over its own
connection, reconnecting with capped backoff (:class:`drivers.mqtt_session.MqttSession`), and
re-publishes the retained topics after every connect. Measurements queue up while the broker is away;
the one in flight when a connection drops is lost (QoS 0). Call :meth:`on_cycle`, :meth:`on_plan` and
:meth:`publish_plan` from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

import aiomqtt

from controller.cycle import CycleReport
from controller.metrics import park_flows
from drivers import topics as tp
from drivers.mqtt_session import MqttEndpoint, MqttOptions, MqttSession
from parkctl.clock import Clock

log = logging.getLogger(__name__)


def controller_topic(site: str, kind: str) -> str:
    return f"{tp.ROOT}/{tp.check_name(site, 'site')}/controller/{kind}"


@dataclass(frozen=True, slots=True)
class TelemetryStats:
    published: int
    dropped: int  # measurements dropped from a full queue (oldest first)
    publish_failures: int
    reconnects: int
    queued: int
    connected: bool


class MqttTelemetry(MqttSession):
    """Publishes cycle reports, controller state and the plan summary on the site's controller topics."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        site: str,
        clock: Clock,
        strategy: str = "rules",
        every_cycles: int | None = None,
        every_s: float | None = 10.0,
        queue_size: int = 256,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        publish_timeout_s: float = 2.0,
        flush_timeout_s: float = 1.0,
        **conn: Unpack[MqttOptions],
    ) -> None:
        if every_cycles is None and every_s is None:
            raise ValueError("set every_cycles or every_s (or both) for measurements")
        if (every_cycles is not None and every_cycles < 1) or (every_s is not None and every_s < 0) or queue_size < 1:
            raise ValueError("need every_cycles >= 1, every_s >= 0 and queue_size >= 1")
        self.site = tp.check_name(site, "site")
        endpoint = MqttEndpoint.of(host, port, conn, f"parkctl-{site}-telemetry", timeout_s=publish_timeout_s,
                                   clean_session=None)  # fmt: skip
        super().__init__(endpoint, backoff_s=backoff_s, label="MQTT telemetry", task_name=f"mqtt-telemetry-{site}",
                         logger=log)  # fmt: skip
        self._clock = clock
        self._every_cycles, self._every_s = every_cycles, every_s
        self._publish_timeout_s, self._flush_timeout_s = publish_timeout_s, flush_timeout_s
        self._topics = {k: controller_topic(site, k) for k in ("measurements", "state", "plan")}
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_size)
        self._retained: dict[str, bytes] = {}  # latest payload per retained topic
        self._pending: dict[str, bytes] = {}  # retained payloads not yet confirmed on this connection
        self._events: deque[tuple[str, bytes]] = deque(maxlen=queue_size)  # QoS-1 events, oldest first
        self._wake = asyncio.Event()
        self._n: Counter[str] = Counter()
        self._since_meas = 0
        self._last_meas: datetime | None = None
        self._state: dict[str, Any] = {"strategy": strategy, "optimizer_status": None, "plan_ts": None,
                                       "fallback_active": False, "alarm_codes": ()}  # fmt: skip
        self._state_key: tuple[Any, ...] | None = None

    # -- lifecycle: start/wait_connected/async with are MqttSession's ---------------------------------
    async def stop(self) -> None:
        """Flush what is queued (up to ``flush_timeout_s``) and disconnect cleanly."""
        if not self._tasks:
            return
        self._closing = True
        self._wake.set()
        if self._connected.is_set():
            await asyncio.wait(self._tasks, timeout=self._flush_timeout_s)
        await super().stop()

    @property
    def stats(self) -> TelemetryStats:
        n = self._n
        return TelemetryStats(n["published"], n["dropped"], n["publish_failures"], self.reconnects,
                              self._queue.qsize(), self.connected)  # fmt: skip

    # -- producer side: synchronous, never blocks ------------------------------------------------------
    def on_cycle(self, report: CycleReport) -> None:
        now = self._clock.now()
        snap = report.snapshot
        readings = (*snap.pv.items(), *snap.batteries.items(), *snap.loads.items())
        codes = ["stale:meter"] if snap.meter is None else []
        codes += sorted({f"stale:{k}" for k, r in readings if r is None})
        if any(e.startswith("decide:") for e in report.errors):
            codes.append("decide_error")
        self._state["alarm_codes"] = tuple(codes)
        self._update_state(now)
        self._since_meas += 1
        last = self._last_meas
        due = (last is None or (self._every_cycles is not None and self._since_meas >= self._every_cycles)
               or (self._every_s is not None and (now - last).total_seconds() >= self._every_s))  # fmt: skip
        if due:
            self._since_meas, self._last_meas = 0, now
            self._enqueue(self._topics["measurements"], _dump(_measurement(report)))

    def on_plan(
        self, status: str, *, plan_ts: datetime | None = None, solve_s: float | None = None,
        fallback_active: bool = False,
    ) -> None:  # fmt: skip
        """Same call as :meth:`ControllerMetrics.on_plan`; ``solve_s`` is left to the metrics."""
        self._state.update(optimizer_status=status, plan_ts=plan_ts, fallback_active=fallback_active)
        self._update_state(self._clock.now())

    def publish_plan(self, summary: Mapping[str, Any]) -> None:
        """Publish (retained) a plan summary if it differs from the last one; TypeError if not JSON-able."""
        self._set_retained(self._topics["plan"], _dump(summary))

    def publish_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Publish ``payload`` on ``controller/{kind}`` (QoS 1, not retained, e.g. alarms), in order; kept
        queued while the broker is away (the oldest dropped and counted beyond ``queue_size``)."""
        if len(self._events) == self._events.maxlen:
            self._n["dropped"] += 1
        self._events.append((controller_topic(self.site, kind), _dump(payload)))
        self._wake.set()

    def _update_state(self, now: datetime) -> None:
        s = self._state
        key = (s["strategy"], s["optimizer_status"], s["plan_ts"], s["fallback_active"], s["alarm_codes"])
        if key == self._state_key:
            return
        self._state_key = key
        plan_ts: datetime | None = s["plan_ts"]
        age = (now - plan_ts).total_seconds() if plan_ts is not None else None
        payload = {"ts": now, "strategy": s["strategy"], "optimizer_status": s["optimizer_status"],
                   "plan_ts": plan_ts, "plan_age_s": age, "fallback_active": s["fallback_active"],
                   "alarms": len(s["alarm_codes"]), "alarm_codes": list(s["alarm_codes"])}  # fmt: skip
        self._set_retained(self._topics["state"], _dump(payload))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._n["dropped"] += 1
        self._queue.put_nowait((topic, payload))
        self._wake.set()

    def _set_retained(self, topic: str, payload: bytes) -> None:
        if self._retained.get(topic) == payload:
            return
        self._retained[topic] = self._pending[topic] = payload
        self._wake.set()

    # -- publisher side ------------------------------------------------------------------------------
    async def _on_connect(self, client: aiomqtt.Client) -> None:
        self._pending.update(self._retained)  # the broker may have lost them; cheap to repeat

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish until stopping (then return, to disconnect cleanly) or until the connection drops."""
        lost = asyncio.ensure_future(_until_disconnected(client))
        try:
            while True:
                self._wake.clear()
                await self._drain(client)
                if self._closing:
                    return
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({woken, lost}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if lost.done():
                    lost.result()  # raises the disconnect
        finally:
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await lost

    async def _drain(self, client: aiomqtt.Client) -> None:
        while self._pending or self._events or not self._queue.empty():
            if self._pending:
                topic, payload = next(iter(self._pending.items()))
                await self._publish(client, topic, payload, qos=1, retain=True)
                if self._pending.get(topic) is payload:  # not replaced meanwhile
                    del self._pending[topic]
            elif self._events:
                event = self._events[0]
                await self._publish(client, *event, qos=1, retain=False)
                if self._events and self._events[0] is event:  # confirmed: only now off the queue
                    self._events.popleft()
            else:
                topic, payload = self._queue.get_nowait()
                await self._publish(client, topic, payload, qos=0, retain=False)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=self._publish_timeout_s)
        except (aiomqtt.MqttError, TimeoutError):
            self._n["publish_failures"] += 1
            raise
        self._n["published"] += 1


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Nothing is subscribed: the message iterator only ever ends by raising on disconnect."""
    async for _ in client.messages:
        pass
    raise aiomqtt.MqttError("disconnected")


def _measurement(r: CycleReport) -> dict[str, Any]:
    snap, sp, f = r.snapshot, r.setpoints, park_flows(r.snapshot)
    return {
        "ts": r.ts, "grid_kw": f.grid_kw, "pv_kw": f.pv_kw, "battery_kw": f.battery_kw, "load_kw": f.load_kw,
        "complete": snap.complete, "reason": sp.reason,
        "pv": {k: {"p_kw": _get(v, "p_kw"), "limit_kw": sp.pv_limit_kw.get(k)} for k, v in snap.pv.items()},
        "batteries": {k: {"p_kw": _get(v, "p_kw"), "soc_pct": _get(v, "soc_pct"),
                          "setpoint_kw": sp.battery_p_kw.get(k)} for k, v in snap.batteries.items()},
        "loads": {k: {"p_kw": _get(v, "p_kw"), "running": _get(v, "running"), "shed": sp.load_shed.get(k)}
                  for k, v in snap.loads.items()},
    }  # fmt: skip


def _get(reading: object | None, attr: str) -> Any:
    """A reading's field, or None for a reading the cycle did not get (never an older value)."""
    return None if reading is None else getattr(reading, attr)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (JSON has no NaN), datetimes ISO-8601 with offset."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _dump(obj: Any) -> bytes:
    return json.dumps(_clean(obj), allow_nan=False, separators=(",", ":")).encode()
