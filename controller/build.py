"""Turn a :class:`ControllerConfig` into a running controller: drivers, device set, decide, runtime.

``parkctl run`` (real devices) and ``parkctl sim`` (simulated ones) both come through here, so the
simulated day exercises exactly the code an edge box runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from controller.config import ControllerConfig, ModbusDeviceConfig
from controller.cycle import Decide, Observer, Runtime
from controller.devices import DeviceSet
from controller.rules import SiteModel, decide_rules
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from drivers.modbus_client import ModbusDeviceClient
from drivers.mqtt_load import MqttLoadBus
from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
from parkctl.clock import Clock
from parkctl.errors import ConfigError
from sim.broker import parse_mqtt_url

BATTERY_REVERT_S = 60  # device watchdog we ask for; the writer re-sends well before it


@dataclass
class Controller:
    runtime: Runtime
    load_bus: MqttLoadBus | None
    clients: dict[str, ModbusDeviceClient]


def rules_decider(site: SiteModel) -> Decide:
    def decide(snap: Snapshot, previous: Setpoints) -> Setpoints:
        return decide_rules(snap, previous, site)

    return decide


def make_decider(config: ControllerConfig) -> Decide:
    if config.strategy == "rules":
        return rules_decider(config.site_model())
    raise ConfigError(f"strategy {config.strategy!r} is not available in this build")


def _driver(d: ModbusDeviceConfig, client: ModbusDeviceClient, config: ControllerConfig, clock: Clock) -> object:
    if d.kind == "pv":
        return SunSpecPvInverter(d.id, client, clock=clock)
    if d.kind == "storage":
        return SunSpecStorage(d.id, client, clock=clock, revert_s=BATTERY_REVERT_S)
    return SunSpecMeter(d.id, client, clock=clock, rated_kw=config.grid.import_cap_kw)


@contextlib.asynccontextmanager
async def build_controller(
    config: ControllerConfig, clock: Clock, observers: Sequence[Observer] = ()
) -> AsyncIterator[Controller]:
    """Create drivers and the runtime; close every connection on exit."""
    clients: dict[str, ModbusDeviceClient] = {}
    drivers: list[object] = []
    for d in config.modbus:
        client = ModbusDeviceClient(d.host, d.port, unit_id=d.unit_id, name=d.id, timeout_s=d.timeout_s,
                                    retries=d.retries)  # fmt: skip
        clients[d.id] = client
        drivers.append(_driver(d, client, config, clock))
    bus: MqttLoadBus | None = None
    if config.loads and config.mqtt is not None:
        url = parse_mqtt_url(config.mqtt.url)
        bus = MqttLoadBus(
            url.host, url.port, site=config.site.name, load_ids=[ld.id for ld in config.loads],
            clock=clock, max_age=timedelta(seconds=config.mqtt.max_age_s),
            ack_timeout_s=config.mqtt.ack_timeout_s, client_id=config.mqtt.client_id,
            username=url.username, password=url.password,
        )  # fmt: skip
        drivers.extend(bus.loads.values())
    devices = DeviceSet.discover(drivers)
    runtime = Runtime(devices, make_decider(config), clock, config.cycle, observers)
    try:
        if bus is not None:
            await bus.start()
            await bus.wait_connected(timeout_s=10.0)
        yield Controller(runtime=runtime, load_bus=bus, clients=clients)
    finally:
        if bus is not None:
            await bus.stop()
        for client in clients.values():
            client.close()
