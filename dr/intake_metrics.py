"""Prometheus view of the DR intake, read at scrape time: decisions, malformed events, the cap in force.

(The event-in-force and performance metrics are :mod:`dr.metrics`'.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dr.manager import DrManager
from parkctl.clock import Clock


class DrIntakeCollector:
    """``parkctl_dr_decisions_total{decision}`` (accepted, updated, cancelled, duplicate, or the reject
    code), ``parkctl_dr_malformed_total{reason}``, ``parkctl_dr_committed_events`` and
    ``parkctl_dr_import_cap_kw`` (NaN outside every committed event)."""

    def __init__(self, site: str, manager: DrManager, clock: Clock,
                 malformed: Callable[[], Mapping[str, int]] = dict) -> None:  # fmt: skip
        self.site, self.manager, self.clock, self.malformed = site, manager, clock, malformed

    def register(self, registry: CollectorRegistry) -> DrIntakeCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        return self._families(describe=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(describe=False)

    def _families(self, describe: bool) -> list[Metric]:
        s = self.site
        decisions = CounterMetricFamily("parkctl_dr_decisions", "DR events answered, by decision or reject code",
                                        labels=("site", "decision"))  # fmt: skip
        malformed = CounterMetricFamily("parkctl_dr_malformed", "DR event payloads that failed to decode",
                                        labels=("site", "reason"))  # fmt: skip
        committed = GaugeMetricFamily("parkctl_dr_committed_events", "Events opted in, not over", labels=("site",))
        cap = GaugeMetricFamily("parkctl_dr_import_cap_kw", "Import cap committed now (NaN: none)", labels=("site",))
        if not describe:
            for code, n in sorted(self.manager.decisions.items()):
                decisions.add_metric((s, code), float(n))
            for reason, n in sorted(self.malformed().items()):
                malformed.add_metric((s, reason), float(n))
            committed.add_metric((s,), float(len(self.manager.committed())))
            now_cap = self.manager.import_cap_at(self.clock.now())
            cap.add_metric((s,), math.nan if now_cap is None else now_cap)
        return [decisions, malformed, committed, cap]
