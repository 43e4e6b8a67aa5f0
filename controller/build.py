"""Turn a :class:`ControllerConfig` into a running controller: drivers, store, telemetry, decide, planner.

``parkctl run`` (real devices) and ``parkctl sim`` (simulated ones) both come through here, so the
simulated day exercises exactly the code an edge box runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from controller.ack_probe import AckProbe
from controller.alarms import AlarmMonitor
from controller.config import ControllerConfig, ModbusDeviceConfig
from controller.cycle import Decide, Observer, Runtime
from controller.devices import DeviceSet
from controller.forecast import Forecaster
from controller.forecast_check import CheckedForecaster
from controller.guard import WriteGuard
from controller.meter_guard import FrozenMeterGuard
from controller.metrics import ControllerMetrics, MetricsServer, serve_metrics
from controller.mpc import ActivePlan, PlanHolder, decide_mpc
from controller.mqtt_auth import session_settings
from controller.planner import PlanListener, Planner
from controller.rules import CapFn, SiteModel, decide_rules
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from controller.telemetry import MqttTelemetry
from dr.setup import DrParts, build_dr
from drivers.modbus_client import ModbusDeviceClient
from drivers.mqtt_load import MqttLoadBus
from drivers.mqtt_session import MqttSessionSettings
from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
from optimizer.plan import Plan
from parkctl.clock import Clock
from parkctl.errors import BrokerUnavailable, ConfigError

BATTERY_REVERT_S = 60  # device watchdog we ask for; the writer re-sends well before it


@dataclass
class Controller:
    runtime: Runtime
    store: Store
    metrics: ControllerMetrics
    registry: CollectorRegistry
    load_bus: MqttLoadBus | None = None
    telemetry: MqttTelemetry | None = None
    planner: Planner | None = None
    plans: PlanHolder | None = None
    clients: dict[str, ModbusDeviceClient] = field(default_factory=dict)
    metrics_server: MetricsServer | None = None
    dr: DrParts | None = None
    alarms: AlarmMonitor | None = None

    def tasks(self, until: datetime | None = None) -> list[Coroutine[Any, Any, None]]:
        """The coroutines that make the controller run; the caller owns the tasks."""
        jobs = [self.runtime.run(until=until)]
        if self.planner is not None:
            jobs.append(self.planner.run())
        return jobs


class DeviceStatsFeed:
    """Observer that hands the Modbus clients' counters to the metrics once per cycle."""

    def __init__(self, metrics: ControllerMetrics, clients: dict[str, ModbusDeviceClient]) -> None:
        self.metrics, self.clients = metrics, clients

    def on_cycle(self, report: object) -> None:
        self.metrics.update_devices({dev: c.stats for dev, c in self.clients.items()})


def resume_from_store(store: Store, runtime: Runtime, plans: PlanHolder | None, now: datetime) -> None:
    """Pick up where a previous run (or a crash) left off: what devices were told, and the plan."""
    state = store.resume_state()
    if state.last_commanded is not None:
        base, last = runtime.writer.commanded, state.last_commanded
        runtime.writer.commanded = Setpoints(
            pv_limit_kw={**base.pv_limit_kw, **{k: v for k, v in last.pv_limit_kw.items() if k in base.pv_limit_kw}},
            battery_p_kw={**base.battery_p_kw,
                          **{k: v for k, v in last.battery_p_kw.items() if k in base.battery_p_kw}},
            load_shed={**base.load_shed, **{k: v for k, v in last.load_shed.items() if k in base.load_shed}},
            reason="resumed",
        )  # fmt: skip
    stored = state.current_plan
    if plans is not None and stored is not None and stored.horizon_start <= now < stored.horizon_end:
        try:
            plan = Plan.model_validate_json(stored.plan) if isinstance(stored.plan, str) else Plan.model_validate(
                stored.plan)
        except ValueError:
            return  # a plan from an older version: the planner makes a new one at once
        plans.set(ActivePlan(plan=plan, created_at=stored.created))


def make_decider(config: ControllerConfig, plans: PlanHolder | None, cap_fn: CapFn | None = None) -> Decide:
    site: SiteModel = config.site_model()
    if config.strategy == "rules":
        def rules(snap: Snapshot, previous: Setpoints) -> Setpoints:
            return decide_rules(snap, previous, site, cap_fn)
        return rules
    if plans is None:
        raise ConfigError("strategy 'mpc' needs a plan holder")

    def mpc(snap: Snapshot, previous: Setpoints) -> Setpoints:
        return decide_mpc(snap, previous, site, plans.current, cap_fn)
    return mpc


def _driver(d: ModbusDeviceConfig, client: ModbusDeviceClient, config: ControllerConfig, clock: Clock) -> object:
    if d.kind == "pv":
        return SunSpecPvInverter(d.id, client, clock=clock)
    if d.kind == "storage":
        return SunSpecStorage(d.id, client, clock=clock, revert_s=BATTERY_REVERT_S)
    return FrozenMeterGuard(SunSpecMeter(d.id, client, clock=clock, rated_kw=config.grid.import_cap_kw))


def plan_summary(plan: Plan) -> dict[str, Any]:
    o = plan.objective
    return {
        "status": plan.status, "fallback": plan.fallback, "start": plan.inputs.start.isoformat(),
        "step_s": plan.inputs.step_s, "n_steps": plan.inputs.n_steps, "cost_cny": o.cost_cny,
        "green_kwh": o.green_kwh, "curtailed_kwh": o.curtailed_kwh, "import_kwh": o.import_kwh,
        "grid_kw": [round(i - e, 1) for i, e in zip(plan.grid_import_kw, plan.grid_export_kw, strict=True)],
    }  # fmt: skip


MIN_PEAK_COVER_S = 300.0  # a quarter-hour seen for less than this says too little about its mean


def month_peak_source(store: Store) -> Any:
    """This month's highest quarter-hour mean import, each measured over the seconds the store covered.

    Not ``import_kwh * 4``: a quarter-hour the store saw only in part (cycles longer than the store's
    ``max_hold_s``, a gap in the readings) would count as a low peak, and a planner told a low peak
    spends the demand charge it thinks is still free.
    """
    def peak(now: datetime) -> float:
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        values = [iv.import_kwh * 3600.0 / iv.covered_s for iv in store.intervals(month_start, closed_only=True)
                  if iv.covered_s >= MIN_PEAK_COVER_S]  # fmt: skip
        return max(values, default=0.0)
    return peak


@contextlib.asynccontextmanager
async def build_controller(
    config: ControllerConfig,
    clock: Clock,
    observers: Sequence[Observer] = (),
    forecaster: Forecaster | None = None,
    environ: Mapping[str, str] | None = None,
    device_monotonic: Callable[[], float] | None = None,
) -> AsyncIterator[Controller]:
    """Create everything the controller needs; close every connection and the store on exit.

    ``environ`` (default: the process environment) is where ``mqtt.password_env`` is looked up.
    ``device_monotonic`` times the Modbus clients' reconnect backoff (a simulation passes its clock's).
    """
    clients: dict[str, ModbusDeviceClient] = {}
    drivers: list[object] = []
    for d in config.modbus:
        client = ModbusDeviceClient(d.host, d.port, unit_id=d.unit_id, name=d.id, timeout_s=d.timeout_s,
                                    retries=d.retries, monotonic=device_monotonic or time.monotonic)  # fmt: skip
        clients[d.id] = client
        drivers.append(_driver(d, client, config, clock))
    url: MqttSessionSettings | None = None
    if config.mqtt is not None:
        url = session_settings(config.mqtt, os.environ if environ is None else environ)
    bus: MqttLoadBus | None = None
    if config.loads and config.mqtt is not None and url is not None:
        bus = MqttLoadBus(
            url.host, url.port, site=config.site.name, load_ids=[ld.id for ld in config.loads],
            clock=clock, max_age=timedelta(seconds=config.mqtt.max_age_s),
            ack_timeout_s=config.mqtt.ack_timeout_s, **url.options(config.mqtt.client_id),
        )  # fmt: skip
        drivers.extend(bus.loads.values())
    devices = DeviceSet.discover(drivers)
    store = Store.open(config.storage.path, clock, StoreSettings(cycle_every=config.storage.cycle_every))
    registry = CollectorRegistry()
    dr = build_dr(config, store, clock, url, registry) if config.dr is not None else None
    metrics = ControllerMetrics(registry, config.site.name)
    telemetry = None
    if url is not None and config.telemetry.enabled:
        telemetry = MqttTelemetry(
            url.host, url.port, site=config.site.name, clock=clock, strategy=config.strategy,
            every_s=config.telemetry.every_s, **url.options(f"{config.site.name}-telemetry"),
        )  # fmt: skip
    guard = next((g for g in drivers if isinstance(g, FrozenMeterGuard)), None)
    alarms = AlarmMonitor(store, registry, config.site.name, meter_id=guard.id if guard else "meter", bus=bus,
                          meter=guard, publish=telemetry.publish_event if telemetry else None,
                          probe=AckProbe(devices.loads) if devices.loads else None)  # fmt: skip
    plans = PlanHolder() if config.strategy == "mpc" else None
    planner = None
    if plans is not None:
        if forecaster is None:
            from controller.persistence_forecast import PersistenceForecaster

            forecaster = PersistenceForecaster(store, config)
        forecaster = CheckedForecaster(forecaster, alarms.forecast_checked)
        listeners: list[PlanListener] = [metrics, alarms, *([telemetry] if telemetry else [])]
        def save(p: Plan) -> None:
            end = p.inputs.start + timedelta(seconds=p.inputs.step_s * p.inputs.n_steps)
            store.save_plan(config.strategy, p.status, p.inputs.start, end, p.model_dump_json(), fallback=p.fallback)

        on_plan: list[Callable[[Plan], None]] = [save]
        if telemetry is not None:
            on_plan.append(lambda p: telemetry.publish_plan(plan_summary(p)))
        planner = Planner(config, forecaster, clock, plans, listeners=listeners, on_new_plan=on_plan,
                          peak_source=month_peak_source(store),
                          dr_source=dr.manager.dr_source if dr else None)  # fmt: skip
        if dr is not None:
            dr.manager.on_change.append(planner.request)
    all_observers: list[Observer] = [store, metrics, alarms, DeviceStatsFeed(metrics, clients),
                                     *([telemetry] if telemetry else []),
                                     *([planner] if planner else []), *(dr.observers if dr else []),
                                     *observers]  # fmt: skip
    decide = make_decider(config, plans, dr.manager.import_cap_at if dr else None)
    runtime = Runtime(devices, decide, clock, config.cycle, all_observers,
                      guard=WriteGuard.from_config(config), journal=store.journal_writes)  # fmt: skip
    resume_from_store(store, runtime, plans, clock.now())
    alarms.start()
    ctl = Controller(runtime=runtime, store=store, metrics=metrics, registry=registry, load_bus=bus,
                     telemetry=telemetry, planner=planner, plans=plans, clients=clients, dr=dr,
                     alarms=alarms)  # fmt: skip
    try:
        if bus is not None:
            await bus.start()
            try:
                await bus.wait_connected(timeout_s=10.0)
            except TimeoutError:
                raise BrokerUnavailable(f"MQTT broker {url}: not connected within 10 s: {bus.last_error}") from None
        if telemetry is not None:
            await telemetry.start()
        if dr is not None:
            await dr.start()
        if config.metrics.enabled:
            ctl.metrics_server = serve_metrics(registry, config.metrics.host, config.metrics.port)
        yield ctl
    finally:
        if ctl.metrics_server is not None:
            ctl.metrics_server.close()
        if dr is not None:
            await dr.stop()
        if telemetry is not None:
            await telemetry.stop()
        if bus is not None:
            await bus.stop()
        for client in clients.values():
            client.close()
        alarms.close()
        store.close()
