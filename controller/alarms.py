"""Alarms: raised from what the controller sees, cleared when it sees normal operation again.

:class:`AlarmRules` is the pure decision (an :class:`Observation` of one cycle in, alarms raised and
cleared out); :class:`AlarmMonitor` feeds it from the cycle, the planner and the forecast check, and
makes each change durable (the store's ``alarms`` table), visible (MQTT ``controller/alarm``, QoS 1)
and countable (``parkctl_alarm_active{code,device}``, ``parkctl_alarms_raised_total{code}``).

=======================  ========  ==========================================  ==============================
code                     device    raised when                                 cleared when
=======================  ========  ==========================================  ==============================
device_read_failed       device    its read failed ``raise_after`` cycles       a read succeeds
device_stale             device    no fresh reading (no read error) that long   a fresh reading
meter_stale              meter     the meter's values froze (meter_guard)       they move again
load_no_ack              load      a command got no acknowledgement             a command (or probe) is acked
mqtt_payload_invalid     ''        malformed MQTT messages arrived              none for ``quiet_s``
broker_disconnected      ''        the load bus lost the broker that long       it is connected
plan_fallback            ''        the planner failed or fell back to rules     a regular plan
forecast_invalid         ''        a forecast had NaN or missing steps          a valid forecast
controller_restarted     ''        started after an unclean stop (crash)        a complete process image
=======================  ========  ==========================================  ==============================

Alarms still active in the store when the controller starts are taken over as active, so a crash
neither loses nor duplicates them.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.ack_probe import AckProbe
from controller.cycle import CycleReport
from controller.store import Store

log = logging.getLogger(__name__)

AlarmKey = tuple[str, str]  # (code, device); device "" for the site
SESSION_EVENT = "controller_session"


@dataclass(frozen=True, slots=True)
class Observation:
    """What the rules look at after one cycle."""

    ts: datetime
    devices: frozenset[str] = frozenset()  # every device of the cycle (meter, PV, batteries, loads)
    read_failed: frozenset[str] = frozenset()  # reads that raised this cycle
    stale: frozenset[str] = frozenset()  # no fresh reading this cycle (failed reads included)
    frozen: frozenset[str] = frozenset()  # meters whose values froze
    no_ack: frozenset[str] = frozenset()  # loads that did not acknowledge a command
    acked: frozenset[str] = frozenset()  # loads that acknowledged one (accepted or refused)
    payload_errors: int = 0  # malformed MQTT messages since the previous cycle
    broker_connected: bool | None = None  # None: no MQTT
    complete: bool = False  # every device read


@dataclass(frozen=True, slots=True)
class Changes:
    raised: dict[AlarmKey, str] = field(default_factory=dict)  # key -> message
    cleared: frozenset[AlarmKey] = frozenset()


class AlarmRules:
    """Which alarms are active, updated one observation or event at a time. No I/O."""

    def __init__(self, raise_after: int = 2, quiet_s: float = 60.0, active: Iterable[AlarmKey] = ()) -> None:
        self.raise_after, self.quiet_s = raise_after, quiet_s
        self.active: set[AlarmKey] = set(active)
        self._bad: Tally[AlarmKey] = Tally()
        self._last_payload_error: datetime | None = None

    def _judge(self, verdicts: Mapping[AlarmKey, tuple[bool | None, str, int]]) -> Changes:
        """verdicts: key -> (bad? None: cannot tell, message, cycles needed to raise)."""
        raised: dict[AlarmKey, str] = {}
        cleared: set[AlarmKey] = set()
        for key, (bad, message, needed) in verdicts.items():
            if bad is None:
                continue
            if bad:
                self._bad[key] += 1
                if key not in self.active and self._bad[key] >= needed:
                    self.active.add(key)
                    raised[key] = message
            else:
                self._bad.pop(key, None)
                if key in self.active:
                    self.active.discard(key)
                    cleared.add(key)
        return Changes(raised, frozenset(cleared))

    def step(self, obs: Observation) -> Changes:
        n = self.raise_after
        v: dict[AlarmKey, tuple[bool | None, str, int]] = {}
        for dev in obs.devices:
            fresh = dev not in obs.stale
            failed = dev in obs.read_failed and dev not in obs.frozen
            v["device_read_failed", dev] = (True if failed else (False if fresh else None), "read failed", n)
            silent = dev in obs.stale and dev not in obs.read_failed
            v["device_stale", dev] = (True if silent else (False if fresh else None), "no fresh reading", n)
            if dev in obs.no_ack or dev in obs.acked:
                v["load_no_ack", dev] = (dev in obs.no_ack, "command not acknowledged", 1)
        for dev in obs.frozen | {d for c, d in self.active if c == "meter_stale"}:
            stuck = dev in obs.frozen
            v["meter_stale", dev] = (True if stuck else (False if dev not in obs.stale else None),
                                     "meter values frozen", 1)  # fmt: skip
        if obs.payload_errors:
            self._last_payload_error = obs.ts
        quiet = self._last_payload_error is None or (obs.ts - self._last_payload_error).total_seconds() >= self.quiet_s
        v["mqtt_payload_invalid", ""] = (not quiet, f"{obs.payload_errors} malformed MQTT messages", 1)
        if obs.broker_connected is not None:
            v["broker_disconnected", ""] = (not obs.broker_connected, "MQTT broker unreachable", n)
        if ("controller_restarted", "") in self.active and obs.complete:
            v["controller_restarted", ""] = (False, "", 1)
        return self._judge(v)

    def event(self, key: AlarmKey, bad: bool, message: str) -> Changes:
        """An alarm driven by an event (plan, forecast, start-up) rather than by the cycle."""
        return self._judge({key: (bad, message, 1)})


class BusView(Protocol):
    """What the monitor reads of the MQTT load bus (drivers.mqtt_load.MqttLoadBus fits)."""

    @property
    def connected(self) -> bool: ...
    @property
    def stats(self) -> Any: ...


class MeterView(Protocol):
    @property
    def frozen(self) -> bool: ...


Publish = Callable[[str, Mapping[str, Any]], None]  # (kind, payload): MqttTelemetry.publish_event


def observe(report: CycleReport, meter_id: str, *, frozen: bool, payload_errors: int,
            broker_connected: bool | None) -> Observation:  # fmt: skip
    """The rules' view of one cycle report."""
    snap = report.snapshot
    readings: dict[str, object | None] = {meter_id: snap.meter, **snap.pv, **snap.batteries, **snap.loads}
    failed = {e.split(":", 1)[0].removeprefix("read ") for e in report.errors if e.startswith("read ")}
    no_ack = {e.split(":", 1)[0].removeprefix("command ") for e in report.errors if e.startswith("command ")}
    loads = {w.device for w in report.writes if w.kind == "load_shed"}
    return Observation(
        ts=report.ts, devices=frozenset(readings), read_failed=frozenset(failed & readings.keys()),
        stale=frozenset(k for k, r in readings.items() if r is None),
        frozen=frozenset({meter_id} if frozen else ()), no_ack=frozenset(no_ack & loads),
        acked=frozenset(loads - no_ack), payload_errors=payload_errors, broker_connected=broker_connected,
        complete=snap.complete,
    )  # fmt: skip


class AlarmMonitor:
    """Cycle observer and planner listener that keeps the alarms (see the module docstring)."""

    def __init__(
        self, store: Store, registry: CollectorRegistry, site: str, *, meter_id: str = "meter",
        bus: BusView | None = None, meter: MeterView | None = None, publish: Publish | None = None,
        rules: AlarmRules | None = None, probe: AckProbe | None = None,
    ) -> None:  # fmt: skip
        self.store, self.site, self.meter_id, self.probe = store, site, meter_id, probe
        self.bus, self.meter, self.publish = bus, meter, publish
        self.rules = rules or AlarmRules()
        self.raised_count = 0
        self.cleared_count = 0
        self._malformed_seen = 0
        self._session: int | None = None
        self.active_gauge = Gauge("parkctl_alarm_active", "1 while the alarm is active", ("site", "code", "device"),
                                  registry=registry)  # fmt: skip
        self.raised_total = Counter("parkctl_alarms_raised", "Alarms raised", ("site", "code"), registry=registry)

    def start(self) -> None:
        """Take over the alarms still active in the store; raise controller_restarted after a crash."""
        for alarm in self.store.active_alarms():
            self.rules.active.add((alarm.code, alarm.device))
            self.active_gauge.labels(self.site, alarm.code, alarm.device).set(1)
        crashed = self.store.events(SESSION_EVENT, state="running")
        for ev in crashed:
            self.store.set_event_state(ev.id, "crashed")
        now = self.store.clock.now()
        self._session = self.store.record_event(SESSION_EVENT, {"started": now.isoformat()},
                                                external_id=now.isoformat(), state="running")  # fmt: skip
        if crashed:
            self._apply(
                self.rules.event(
                    ("controller_restarted", ""),
                    True,
                    f"started after an unclean stop (session of {crashed[-1].ts.isoformat()})",
                )
            )

    def abandon(self) -> None:
        """A crash: the session stays "running" in the store, which is how the next start can tell."""
        self._session = None

    def close(self) -> None:
        """A clean stop: the next start is not a crash recovery."""
        if self._session is not None:
            self.store.set_event_state(self._session, "stopped")
            self._session = None

    # -- inputs ----------------------------------------------------------------------------------------
    def on_cycle(self, report: CycleReport) -> None:
        errors = 0
        if self.bus is not None:
            total = int(self.bus.stats.malformed_total)
            errors, self._malformed_seen = max(0, total - self._malformed_seen), total
        obs = observe(
            report,
            self.meter_id,
            frozen=bool(self.meter is not None and self.meter.frozen),
            payload_errors=errors,
            broker_connected=None if self.bus is None else self.bus.connected,
        )
        self._apply(self.rules.step(obs))
        if self.probe is not None:
            silent = [d for c, d in self.rules.active if c == "load_no_ack"]
            self.probe.check(report, silent, self._acked)

    def _acked(self, load_id: str) -> None:
        self._apply(self.rules.event(("load_no_ack", load_id), False, ""))

    def on_plan(self, status: str, *, plan_ts: datetime | None = None, solve_s: float | None = None,
                fallback_active: bool = False) -> None:  # fmt: skip
        self._apply(self.rules.event(("plan_fallback", ""), fallback_active, f"planner: {status}"))

    def forecast_checked(self, problem: str | None) -> None:
        self._apply(self.rules.event(("forecast_invalid", ""), problem is not None, problem or ""))

    # -- effects ---------------------------------------------------------------------------------------
    def _apply(self, changes: Changes) -> None:
        for (code, device), message in changes.raised.items():
            self._emit("raised", code, device, message, partial(self.store.raise_alarm, code, device, message))
            self.raised_count += 1
            self.raised_total.labels(self.site, code).inc()
            self.active_gauge.labels(self.site, code, device).set(1)
        for code, device in sorted(changes.cleared):
            self._emit("cleared", code, device, "", partial(self.store.clear_alarm, code, device))
            self.cleared_count += 1
            self.active_gauge.labels(self.site, code, device).set(0)

    def _emit(self, state: str, code: str, device: str, message: str, persist: Callable[[], object]) -> None:
        log.warning("alarm %s %s%s%s", state, code, f" {device}" if device else "", f": {message}" if message else "")
        try:
            persist()
        except Exception:  # the store being busy or broken must not stop the cycle
            log.exception("alarm %s %s could not be stored", state, code)
        if self.publish is not None:
            self.publish("alarm", {"ts": self.store.clock.now(), "state": state, "code": code, "device": device,
                                   "message": message})  # fmt: skip
