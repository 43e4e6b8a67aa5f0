"""Demand response inside the controller: manager, MQTT listener, evidence and endpoint, from the config.

:func:`build_dr` is what :func:`controller.build.build_controller` calls when ``dr:`` is configured.
Baselines come from the store's closed quarter-hours by the programme's method, one per event shared by
planning and evidence (:class:`dr.assess.BaselineBook`); the capacity offered from the latest cycle
(:class:`dr.capacity.ParkCapacity`). The ledger (:class:`dr.ledger.DrLedger`) writes each quarter-hour's
performance into the same database file; the read-only HTTP endpoint serves it to the grid company.
An in-memory store has no file to share, so it gets no ledger and no endpoint (said in the log).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from controller.config import ControllerConfig
from controller.cycle import Observer
from controller.store import Store
from dr.assess import BaselineBook, manager_events
from dr.capacity import ParkCapacity
from dr.evidence import Evidence
from dr.http import DrHttpServer, serve_dr_http
from dr.intake_metrics import DrIntakeCollector
from dr.ledger import DrLedger
from dr.manager import DrManager
from dr.metrics import DrMetrics
from dr.mqtt import DrMqtt
from drivers.mqtt_session import MqttSessionSettings
from parkctl.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class DrParts:
    manager: DrManager
    capacity: ParkCapacity
    mqtt: DrMqtt | None
    book: BaselineBook
    ledger: DrLedger | None = None
    evidence: Evidence | None = None
    db_path: str | None = None
    http_at: tuple[str, int] | None = None  # where to serve the endpoint, None: not served
    http: DrHttpServer | None = field(default=None, init=False)

    @property
    def observers(self) -> list[Observer]:
        """Cycle observers: the capacity feed first, so an event decided next sees the latest SoC; the
        ledger last, after the store has closed the quarter-hour it assesses."""
        return [self.capacity, self.manager, *([self.ledger] if self.ledger else [])]

    async def start(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.start()
        if self.http_at is not None and self.db_path is not None:
            self.http = serve_dr_http(self.db_path, *self.http_at)
            log.info("demand-response events served at %s", self.http.url)

    async def stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.evidence is not None:
            self.evidence.close()


def build_dr(
    config: ControllerConfig, store: Store, clock: Clock, mqtt_settings: MqttSessionSettings | None,
    registry: CollectorRegistry | None = None,
) -> DrParts:  # fmt: skip
    """Manager (reloaded from the store), capacity feed, the MQTT listener when there is a broker, and
    the DR metrics on ``registry``."""
    if config.dr is None:
        raise ValueError("no 'dr' section in the configuration")
    capacity = ParkCapacity(config)
    programmes = config.dr.programmes
    book = BaselineBook(store, programmes, ZoneInfo(config.site.timezone), now=clock.now,
                        other_events=lambda: [r.spec for r in manager.records.values() if r.committed])  # fmt: skip
    manager = DrManager(config.dr, store, baseline_fn=book.kw, capacity_fn=capacity)
    manager.load()
    manager.tick(clock.now())
    mqtt = None
    if mqtt_settings is not None and config.dr.mqtt_enabled:
        ms = mqtt_settings
        mqtt = DrMqtt(ms.host, ms.port, site=config.site.name, manager=manager, clock=clock,
                      **ms.options(f"{config.site.name}-dr"))  # fmt: skip
    if registry is not None:
        malformed = (lambda: mqtt.malformed) if mqtt is not None else dict
        DrIntakeCollector(config.site.name, manager, clock, malformed).register(registry)
    parts = DrParts(manager, capacity, mqtt, book)
    if store.path == ":memory:":
        log.warning("demand response with an in-memory store: no performance records, no HTTP endpoint")
        return parts
    parts.db_path = store.path
    parts.evidence = Evidence.open(store.path)
    dr_metrics = [DrMetrics(registry, config.site.name)] if registry is not None else []
    nominal = {ld.id: ld.nominal_kw for ld in config.loads}
    parts.ledger = DrLedger(store, parts.evidence, manager_events(manager, book, programmes), nominal_kw=nominal,
                            observers=dr_metrics)  # fmt: skip
    if config.dr.http.enabled:
        parts.http_at = (config.dr.http.host, config.dr.http.port)
    return parts
