"""What a scenario with faults adds to a simulated day: injection, controller restarts and the audit.

:func:`sim.day.simulate_day` builds one :class:`FaultRun` when the scenario has faults; it wraps the
forecaster, prepares every controller built during the day (optimiser wrapper, plan counter), runs the
injector on the shared clock, and at the end writes ``faults.json`` (:mod:`sim.fault_report`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from controller.build import Controller
from controller.forecast import Forecaster
from optimizer.plan import Plan
from parkctl.clock import Clock
from sim import fault_report
from sim.broker import PrivateMosquitto
from sim.controller_slot import ControllerSlot
from sim.fault_inject import FaultInjector, FaultyForecaster, FaultyOptimizer, PlannerFaults
from sim.faults import PLANNER_KINDS
from sim.modbus_server import ParkEndpoints
from sim.mqtt_devices import SimMqttLoads
from sim.park import Park
from sim.scenario import Scenario

log = logging.getLogger(__name__)


class FaultRun:
    def __init__(self, scenario: Scenario, clock: Clock, park: Park, endpoints: ParkEndpoints,
                 devices: SimMqttLoads, broker: PrivateMosquitto | None, strategy: str) -> None:  # fmt: skip
        self.scenario, self.park, self.endpoints, self.devices = scenario, park, endpoints, devices
        self.strategy = strategy
        self.planner = PlannerFaults()
        self.plans_made = 0
        self.injector = FaultInjector(
            list(scenario.faults), scenario.local_start, clock, servers=endpoints.servers, loads=devices.devices,
            broker=broker, violation_s=self._violation_s, planner=self.planner,
        )  # fmt: skip

    def _violation_s(self) -> float:
        self.park.sync()
        k = self.park.kpis()
        return k["export_limit_violation_s"] + k["import_limit_violation_s"]

    def silenced_loads(self) -> set[str]:
        return self.injector.silenced_loads()

    def forecaster(self, inner: Forecaster) -> Forecaster:
        return FaultyForecaster(inner, self.planner)

    def prepare(self, ctl: Controller) -> None:
        """Hand a freshly built controller's planner the faulty optimiser, and count its plans."""
        if ctl.planner is not None:
            # Planner has no constructor hook for its solver yet; it is a plain attribute.
            ctl.planner.optimizer = FaultyOptimizer(ctl.planner.optimizer, self.planner)  # type: ignore[assignment]
            ctl.planner.on_new_plan.append(self._count_plan)

    def _count_plan(self, plan: Plan) -> None:
        self.plans_made += 1

    async def run(self, slot: ControllerSlot, until: datetime) -> None:
        async def revive() -> None:
            await slot.start()

        self.injector.crash, self.injector.revive = slot.crash, revive
        await self.injector.run(until)

    def hits(self) -> dict[int, int | None]:
        """How often each fault bit: commands a no-ack load ignored, forecasts or solves spoiled."""
        out: dict[int, int | None] = {}
        for i, f in enumerate(self.injector.faults):
            if f.kind == "load_no_ack" or f.kind in PLANNER_KINDS:
                out[i] = self.injector.hits.get(i, 0)
            else:
                out[i] = None
        return out

    @staticmethod
    def _probes(slot: ControllerSlot) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in slot.controllers:
            probe = c.alarms.probe if c.alarms is not None else None
            for lid, n in (probe.sent if probe is not None else {}).items():
                out[lid] = out.get(lid, 0) + n
        return out

    def finish(self, out_dir: Path, db: Path, slot: ControllerSlot, kpis: Mapping[str, float],
               end: datetime) -> str:  # fmt: skip
        """Write faults.json; the summary lines for the command line."""
        sc = self.scenario
        received = {dev: s.setpoints_received for dev, s in self.endpoints.servers.items() if s.setpoints_received}
        received.update({lid: st.commands_applied for lid, st in self.devices.stats.items() if st.commands_applied})
        counts = fault_report.DayCounts(
            setpoints_received=received, plans_made=self.plans_made,
            alarms_raised=sum(c.alarms.raised_count for c in slot.controllers if c.alarms is not None),
            crashes=slot.crashes, probes=self._probes(slot),
        )  # fmt: skip
        bounds = (min((b.soc_min_pct for b in sc.batteries), default=0.0),
                  max((b.soc_max_pct for b in sc.batteries), default=100.0))  # fmt: skip
        samples = [*self.injector.samples, (end, kpis["export_limit_violation_s"] + kpis["import_limit_violation_s"])]
        report = fault_report.build_report(
            sc.faults, self.injector.times, self.hits(), sc.local_start, self.strategy, kpis, bounds, db, counts,
            samples, self.injector.windows(),
        )  # fmt: skip
        path = fault_report.write_report(out_dir, report)
        return fault_report.summary(report) + f"\n  fault report in {path}"
