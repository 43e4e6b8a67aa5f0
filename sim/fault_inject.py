"""Putting a scenario's faults into the running park: one actor that switches each fault on and off.

The mechanisms are hooks the simulated parts offer, never patches of the controller: a Modbus server's
:class:`~sim.modbus_server.ModbusFault` (or stopping its listener), a simulated MQTT load's
``ignore_commands`` / ``malformed_state``, the private Mosquitto's stop/start, and two wrappers the
simulator hands the controller in place of its forecaster and optimiser. A controller restart is
delegated to the caller (``restart``), which owns the controller.

At every fault boundary the injector also notes the park's violation counters, so the report can tell
violation seconds inside fault windows (plus a grace period) from those the controller alone caused.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from controller.forecast import Forecast, Forecaster
from optimizer.inputs import OptimizerInputs
from optimizer.plan import Plan
from parkctl.clock import Clock
from sim.broker import PrivateMosquitto
from sim.faults import PLANNER_KINDS, Fault
from sim.modbus_server import SunSpecServer
from sim.mqtt_devices import SimMqttLoad

log = logging.getLogger(__name__)

INFEASIBLE_IMPORT_CAP_KW = 0.0  # with zero export and a night in the horizon, nothing can meet it
FAULT_PRIORITY = 5  # after the devices publish (0), before the barrier (10) and the controller (50)
SETTLE_S = 300.0  # after a fault ends, violations still count as the fault's for this long


class Solver(Protocol):
    """What the planner calls (``optimizer.persistent.RollingOptimizer`` has this method)."""

    def solve(self, inputs: OptimizerInputs) -> Plan: ...


@dataclass
class PlannerFaults:
    """Planner-side faults in force now; shared by the forecaster and optimiser wrappers."""

    active: set[str] = field(default_factory=set)
    injected: dict[str, int] = field(default_factory=dict)  # kind -> forecasts/solves it spoiled

    def hit(self, kind: str) -> bool:
        if kind in self.active:
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return True
        return False


class FaultyForecaster:
    """Passes forecasts through, with NaN steps or missing steps while those faults are active."""

    def __init__(self, inner: Forecaster, faults: PlannerFaults) -> None:
        self.inner, self.faults = inner, faults

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        fc = self.inner.forecast(issued_at, start, steps, step_s)
        if self.faults.hit("forecast_nan"):

            def holes(a: np.ndarray) -> np.ndarray:
                out = np.array(a, dtype=float)
                out[1 : max(2, len(out) // 8)] = np.nan
                return out

            fc = dataclasses.replace(fc, pv_kw={k: holes(v) for k, v in fc.pv_kw.items()},
                                     load_kw=holes(fc.load_kw))  # fmt: skip
        if self.faults.hit("forecast_gap"):
            keep = max(1, fc.steps // 2)
            fc = dataclasses.replace(
                fc,
                pv_kw={k: v[:keep] for k, v in fc.pv_kw.items()},
                load_kw=fc.load_kw[:keep],
                interruptible_kw={k: v[:keep] for k, v in fc.interruptible_kw.items()},
            )
        return fc


class FaultyOptimizer(Solver):
    """The planner's optimiser: it times out, or is given an impossible import cap, while those faults are active."""

    def __init__(self, inner: Solver, faults: PlannerFaults) -> None:
        self.inner, self.faults = inner, faults

    def solve(self, inputs: OptimizerInputs) -> Plan:
        if self.faults.hit("optimizer_timeout"):
            # A solve that never comes back, cut off by a watchdog. (Squeezing the solver's own time limit
            # does not do it: HiGHS gets at least 50 ms, in which it finds an incumbent on this park and
            # returns a usable plan with status time_limit, as it often does anyway.)
            raise TimeoutError("optimizer did not return within its time limit (fault injection)")
        if self.faults.hit("optimizer_infeasible"):
            inputs = inputs.model_copy(update={"import_cap_kw": [INFEASIBLE_IMPORT_CAP_KW] * inputs.n_steps})
        return self.inner.solve(inputs)


@dataclass
class FaultTimes:
    """When a fault really began and ended (None: the day ended first)."""

    started: datetime | None = None
    ended: datetime | None = None


class FaultInjector:
    """Switches the scenario's faults on and off on the shared clock (run :meth:`run` as a task)."""

    def __init__(
        self,
        faults: list[Fault],
        start: datetime,
        clock: Clock,
        *,
        servers: Mapping[str, SunSpecServer],
        loads: Mapping[str, SimMqttLoad],
        broker: PrivateMosquitto | None,
        violation_s: Callable[[], float],
        crash: Callable[[], Awaitable[None]] | None = None,
        revive: Callable[[], Awaitable[None]] | None = None,
        planner: PlannerFaults | None = None,
    ) -> None:
        self.faults, self.t0, self.clock = faults, start, clock
        self.servers, self.loads, self.broker = servers, loads, broker
        self.violation_s, self.crash, self.revive = violation_s, crash, revive
        self.planner = planner or PlannerFaults()
        self.times: dict[int, FaultTimes] = {i: FaultTimes() for i in range(len(faults))}
        self.samples: list[tuple[datetime, float]] = []  # the park's violation seconds at each boundary
        self.hits: dict[int, int] = {}  # per fault: commands ignored, forecasts or solves spoiled
        self._hits0: dict[int, int] = {}
        for server in servers.values():
            server.fault.now = clock.now
        if broker is None and any(f.kind == "broker_restart" for f in faults):
            raise ValueError("broker_restart needs the simulator's own broker (no --mqtt-url)")

    def boundaries(self) -> list[tuple[datetime, int, str]]:
        """(instant, fault index, "start" | "end" | "settle") in time order, ends before starts."""
        order = {"end": 0, "settle": 1, "start": 2}
        out = []
        for i, f in enumerate(self.faults):
            out.append((self.t0 + f.start, i, "start"))
            if f.kind != "controller_restart" or f.end is not None:
                out.append((self.t0 + f.stop, i, "end"))
            out.append((self.t0 + f.stop + timedelta(seconds=SETTLE_S), i, "settle"))
        return sorted(out, key=lambda b: (b[0], order[b[2]], b[1]))

    def windows(self) -> list[tuple[datetime, datetime]]:
        """Each fault's span plus its settling time: violations inside count as the faults'."""
        return [(self.t0 + f.start, self.t0 + f.stop + timedelta(seconds=SETTLE_S)) for f in self.faults]

    def silenced_loads(self) -> set[str]:
        """Loads whose state reports cannot arrive now (malformed, or no broker): nobody should wait for them."""
        if self.broker is not None and not self.broker.running:
            return set(self.loads)
        return {lid for lid, d in self.loads.items() if d.malformed_state}

    async def run(self, until: datetime) -> None:
        for at, i, what in self.boundaries():
            if at > until:
                return
            await self.clock.sleep_until(at, priority=FAULT_PRIORITY)
            self.samples.append((self.clock.now(), self.violation_s()))
            fault, times = self.faults[i], self.times[i]
            if what == "start":
                times.started = self.clock.now()
                self._hits0[i] = self._hit_count(fault)
                log.warning("fault %s begins", fault.label())
                await self._switch(fault, on=True)
                if fault.kind == "controller_restart" and fault.end is None:
                    times.ended = times.started
            elif what == "end":
                self.hits[i] = self._hit_count(fault) - self._hits0.get(i, 0)
                await self._switch(fault, on=False)
                times.ended = self.clock.now()
                log.warning("fault %s ends", fault.label())

    def _hit_count(self, fault: Fault) -> int:
        if fault.kind == "load_no_ack":
            return self.loads[fault.device].stats.commands_ignored
        return self.planner.injected.get(fault.kind, 0)

    async def _switch(self, fault: Fault, *, on: bool) -> None:
        k = fault.kind
        if k in PLANNER_KINDS:
            (self.planner.active.add if on else self.planner.active.discard)(k)
        elif k == "modbus_down":
            server = self.servers[fault.device]
            await (server.stop() if on else server.start())
        elif k in ("modbus_slow", "modbus_garbage", "meter_stale"):
            f = self.servers[fault.device].fault
            if k == "modbus_slow":
                f.delay_s = (fault.delay_s or 0.0) if on else 0.0
            elif k == "modbus_garbage":
                f.garbage = random.Random(fault.seed) if on else None
            else:
                f.frozen = on
        elif k == "load_no_ack":
            self.loads[fault.device].ignore_commands = on
        elif k == "load_malformed":
            self.loads[fault.device].malformed_state = on
        elif k == "broker_restart":
            assert self.broker is not None
            await (self.broker.astop() if on else self.broker.astart())
        elif k == "controller_restart":
            if on and self.crash is not None:
                await self.crash()
            if (not on or fault.end is None) and self.revive is not None:
                await self.revive()
        else:  # pragma: no cover - the Literal covers every kind
            raise ValueError(f"unknown fault kind {k!r}")
