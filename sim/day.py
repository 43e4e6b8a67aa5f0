"""A simulated park day: the park, its protocol servers and the controller, on one shared clock.

The controller here is the production runtime (:mod:`controller.cycle`) built from a configuration
that points at the simulated devices, exactly as it would point at real ones. Everything goes over
real sockets: Modbus TCP to one pymodbus server per device, MQTT through a real Mosquitto.

Lock-step order at every control instant (see :class:`parkctl.clock.SimClock`): the park's MQTT
devices publish (priority 0), the barrier waits until the controller has received those reports
(priority 10), then the controller cycles (priority 50). That makes a run with a given seed repeat
exactly at any speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from controller.build import Controller
from controller.config import (
    BatterySpec,
    ControllerConfig,
    LoadConfig,
    MetricsConfig,
    ModbusDeviceConfig,
    MqttConfig,
    PlannerConfig,
    SiteConfig,
    StorageConfig,
)
from controller.cycle import CycleSettings
from controller.settings import BatteryLimits, GridLimits
from drivers.mqtt_load import MqttLoadBus
from parkctl.clock import Clock, SimClock, ceil_to
from sim.broker import BrokerUrl, PrivateMosquitto, select_broker
from sim.controller_slot import ControllerSlot
from sim.dr_results import dr_summary, write_dr_results
from sim.fault_day import FaultRun
from sim.forecast import SimForecaster
from sim.grid_company import SentCall, run_grid_company
from sim.modbus_server import ParkEndpoints, start_park_servers
from sim.mqtt_devices import SimMqttLoads
from sim.park import Park
from sim.prior_history import seed_history
from sim.scenario import Scenario

log = logging.getLogger(__name__)

MQTT_PUBLISH_S = 5.0


@dataclass(frozen=True)
class SimOptions:
    hours: float = 24.0
    speed: float | None = None  # None: as fast as possible
    strategy: str = "rules"
    mqtt_url: str | None = None
    cycle_s: float = 15.0
    out_dir: Path = Path("out/sim")
    metrics_port: int | None = None  # serve /metrics during the run (0: any free port)


@dataclass(frozen=True)
class SimResult:
    kpis: dict[str, float]
    out_dir: Path
    wall_s: float
    cycles: int
    notes: tuple[str, ...] = ()  # further summary lines (demand response, faults)

    def summary(self) -> str:
        k = self.kpis
        return "\n".join((self._kpi_summary(k), *self.notes))

    def _kpi_summary(self, k: dict[str, float]) -> str:
        return (
            f"simulated {k['hours']:.1f} h in {self.wall_s:.1f} s wall ({self.cycles} control cycles)\n"
            f"  PV available {k['pv_available_kwh']:.0f} kWh, used on site {k['green_utilization']:.1%}"
            f" (curtailed {k['pv_curtailed_kwh']:.0f} kWh)\n"
            f"  load {k['load_kwh']:.0f} kWh, grid import {k['grid_import_kwh']:.0f} kWh,"
            f" export {k['grid_export_kwh']:.1f} kWh, cost {k['energy_cost_cny']:.0f} CNY\n"
            f"  limit violations: export {k['export_limit_violation_s']:.0f} s,"
            f" import {k['import_limit_violation_s']:.0f} s; SoC {k['soc_min_pct']:.1f}..{k['soc_max_pct']:.1f} %\n"
            f"  results in {self.out_dir}/kpis.json and timeseries.csv"
        )


def planner_config_for(scenario: Scenario) -> PlannerConfig:
    """What an operator would configure for planning this park: its tariff and battery nameplates."""
    specs = {
        b.id: BatterySpec(capacity_kwh=b.capacity_kwh, p_charge_max_kw=b.p_charge_max_kw,
                          p_discharge_max_kw=b.p_discharge_max_kw, eta_charge=b.eta_charge,
                          eta_discharge=b.eta_discharge, degradation_cny_per_kwh=b.degradation_cny_per_kwh)
        for b in scenario.batteries
    }  # fmt: skip
    return PlannerConfig(tariff=scenario.tariff, carbon_kg_per_kwh=scenario.grid.carbon_kg_per_kwh,
                         battery_specs=specs)  # fmt: skip


def controller_config_for(
    scenario: Scenario,
    endpoints: ParkEndpoints,
    broker: BrokerUrl,
    cycle_s: float,
    strategy: str,
    db_path: str = ":memory:",
    metrics_port: int | None = None,
) -> ControllerConfig:
    """The configuration an operator would write for this park, pointing at the simulated devices."""
    modbus = []
    rated = {p.id: p.ac_kw for p in scenario.pv}
    for dev_id, ep in endpoints.devices.items():
        modbus.append(ModbusDeviceConfig(
            id=dev_id, kind=ep.kind, host=ep.host, port=ep.port, unit_id=ep.unit_id,
            rated_kw=rated.get(dev_id),
        ))  # fmt: skip
    dr = scenario.demand_response.dr_config() if scenario.demand_response else None
    return ControllerConfig(
        site=SiteConfig(name=scenario.site.name, timezone=scenario.site.timezone),
        grid=GridLimits(import_cap_kw=scenario.grid.import_cap_kw, export_cap_kw=scenario.grid.export_cap_kw),
        batteries={
            b.id: BatteryLimits(soc_min_pct=b.soc_min_pct, soc_max_pct=b.soc_max_pct) for b in scenario.batteries
        },
        cycle=CycleSettings(period_s=cycle_s, max_age_s=max(30.0, 2.5 * cycle_s)),
        strategy=strategy,  # type: ignore[arg-type]
        modbus=modbus,
        mqtt=MqttConfig(url=str(broker), client_id=f"parkctl-{scenario.site.name}-controller",
                        max_age_s=max(30.0, 3 * cycle_s)),
        loads=[
            LoadConfig(id=ld.id, nominal_kw=ld.p_kw, max_shed_s=ld.max_shed_s, min_shed_s=ld.min_off_s,
                       min_gap_s=ld.min_on_s,
                       max_sheds_per_day=ld.max_sheds_per_day, rebound_factor=ld.rebound_factor,
                       rebound_s=ld.rebound_s, shed_cost_cny_per_kwh=ld.shed_cost_cny_per_kwh)
            for ld in scenario.interruptible_loads
        ],
        planner=planner_config_for(scenario),
        storage=StorageConfig(path=db_path),
        metrics=MetricsConfig(enabled=metrics_port is not None, port=metrics_port or 0),
        dr=dr,
    )  # fmt: skip


async def _barrier(clock: Clock, bus: MqttLoadBus | None, period: timedelta, load_ids: list[str],
                   silenced: Callable[[], set[str]] | None = None) -> None:  # fmt: skip
    """Before each control instant, wait until the controller holds the loads' reports of that instant
    (except from loads a fault keeps from reporting: ``silenced``)."""
    if bus is None:
        return
    t = ceil_to(clock.now(), period)
    while True:
        await clock.sleep_until(t, priority=10)
        skip = silenced() if silenced is not None else set()
        for lid in load_ids:
            if lid in skip:
                continue
            try:
                await bus.wait_for_state(lid, t, timeout_s=2.0)
            except TimeoutError:
                log.warning("no state report from %s for %s; the controller will see it stale", lid, t)
        t += period


@contextlib.asynccontextmanager
async def running_park(
    scenario: Scenario, clock: Clock, mqtt_url: str | None, modbus_base_port: int = 0,
    publish_s: float = MQTT_PUBLISH_S,
) -> AsyncIterator[tuple[Park, ParkEndpoints, BrokerUrl, SimMqttLoads]]:
    """Start the park's physics, Modbus servers, broker and MQTT devices; stop them all on exit."""
    park = Park(scenario, clock)
    async with select_broker(mqtt_url) as broker:
        servers = await start_park_servers(park, scenario, base_port=modbus_base_port)
        devices = SimMqttLoads(
            broker.host, broker.port, site=scenario.site.name, load_ids=park.load_ids, park=park,
            clock=clock, period_s=publish_s, username=broker.username, password=broker.password,
        )  # fmt: skip
        try:
            await devices.start()
            yield park, servers, broker, devices
        finally:
            await devices.stop()
            await servers.stop()


async def simulate_day(scenario: Scenario, options: SimOptions) -> SimResult:
    """Run park and controller for ``options.hours`` of scenario time; write kpis.json and timeseries.csv."""
    started = time.perf_counter()
    clock = SimClock(scenario.local_start, speed=options.speed, paused=True)  # still while setting up
    end = scenario.end_after(options.hours)
    # a day with faults runs its own broker, so that it can restart it (broker_restart)
    own = PrivateMosquitto() if scenario.faults and options.mqtt_url is None else None
    mqtt_url = str(own.url) if own is not None else options.mqtt_url
    # Loads report once per control cycle: more often would only be read as the same value.
    async with (
        own if own is not None else contextlib.nullcontext(),
        running_park(scenario, clock, mqtt_url, publish_s=options.cycle_s) as (park, endpoints, broker, devices),
    ):
        options.out_dir.mkdir(parents=True, exist_ok=True)
        db = options.out_dir / "controller.db"
        for old in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            old.unlink(missing_ok=True)
        dr = scenario.demand_response
        if dr is not None and dr.history_days > 0:
            await seed_history(scenario, dr.history_days, db, dr.history_cycle_s)
        sent: list[SentCall] = []
        config = controller_config_for(scenario, endpoints, broker, options.cycle_s, options.strategy,
                                       db_path=str(db), metrics_port=options.metrics_port)  # fmt: skip
        faults = FaultRun(scenario, clock, park, endpoints, devices, own, options.strategy) if scenario.faults else None
        forecaster = SimForecaster(scenario) if faults is None else faults.forecaster(SimForecaster(scenario))
        period = timedelta(seconds=options.cycle_s)

        def barrier(ctl: Controller) -> Coroutine[object, object, None]:
            return _barrier(clock, ctl.load_bus, period, list(park.load_ids), faults.silenced_loads if faults else None)

        # the slot builds the controller, and after a controller_restart fault builds it again
        slot = ControllerSlot(config, clock, end, forecaster=forecaster, jobs=(barrier,),
                              prepare=faults.prepare if faults else None)  # fmt: skip
        await slot.start()
        tasks = []
        if dr is not None and dr.calls:
            company = run_grid_company(clock, broker, scenario.site.name, dr.calls, sent)
            tasks.append(asyncio.create_task(company, name="grid-company"))
        if faults is not None:
            tasks.append(asyncio.create_task(faults.run(slot, end), name="faults"))
        for task in tasks:
            clock.adopt(task)
        gc.collect()
        gc.freeze()  # the park's arrays and the model live all run: keep full collections short
        clock.resume()
        try:
            await clock.sleep_until(end, priority=1_000)
        finally:
            await slot.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await slot.bury()
        park.advance_to(end)
        cycles = slot.cycles
    kpis = park.kpis()
    write_results(options.out_dir, kpis, park.timeseries())
    notes: list[str] = []
    if faults is not None:
        notes.append(faults.finish(options.out_dir, db, slot, kpis, end))
    if dr is not None:
        notes.append(dr_summary(write_dr_results(options.out_dir, db, sent)))
    return SimResult(kpis=kpis, out_dir=options.out_dir, wall_s=time.perf_counter() - started, cycles=cycles,
                     notes=tuple(notes))  # fmt: skip


def write_results(out_dir: Path, kpis: dict[str, float], rows: list[dict[str, object]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kpis.json").write_text(json.dumps(kpis, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with (out_dir / "timeseries.csv").open("w", newline="", encoding="utf-8") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


async def _tick(clock: Clock, park: Park, step: timedelta) -> None:
    """Keep the park's physics (and so its registers) moving between other actors' turns."""
    t = clock.now()
    while True:
        t += step
        await clock.sleep_until(t, priority=0)
        park.sync()


async def serve_park(
    scenario: Scenario, mqtt_url: str | None, speed: float = 1.0, modbus_base_port: int = 0
) -> None:
    """Run the park alone and print every endpoint, until cancelled (Ctrl-C).

    The park lives on its own calendar (the scenario's day) at ``speed`` times real time, so any
    controller pointed at it sees the scenario's sun and tariff periods.
    """
    clock = SimClock(scenario.local_start, speed=speed, paused=True)
    async with running_park(scenario, clock, mqtt_url, modbus_base_port) as (park, endpoints, broker, _):
        clock.resume()
        print(f"simulated park '{scenario.name}' from {scenario.local_start:%Y-%m-%d %H:%M %Z}"
              f" at {speed:g}x real time; Ctrl-C stops it")
        for dev_id, ep in endpoints.devices.items():
            print(f"  modbus  {dev_id:<14} {ep.kind:<8} {ep.host}:{ep.port} unit {ep.unit_id}")
        print(f"  mqtt    broker {broker}")
        for lid in park.load_ids:
            print(f"  mqtt    {lid:<14} park/{scenario.site.name}/load/{lid}/{{state,cmd,ack,availability}}")
        step = timedelta(seconds=scenario.physics_step_s)
        with contextlib.suppress(asyncio.CancelledError):
            await _tick(clock, park, step)
