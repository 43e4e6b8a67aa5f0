"""Prometheus metrics for demand response, on a registry passed in (never the global one).

A :class:`dr.ledger.DrObserver`: each cycle it shows the event in force (an info-style gauge at 1
with the event's labels), its baseline and commitment now, and what the park delivers now
(baseline − grid import) with the ratio to the commitment; NaN while no event runs. Finished events
are counted by outcome; decisions that end an event without an assessment (cancelled, rejected,
opted out) are counted through :meth:`DrMetrics.count`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from dr.event import DrEventSpec
from dr.ledger import Running
from dr.performance import EventOutcome, SlotResult
from drivers import topics as tp

NAN = math.nan
OUTCOMES = ("met", "missed", "cancelled", "rejected", "opted_out")


class DrMetrics:
    def __init__(self, registry: CollectorRegistry, site: str) -> None:
        self.site = tp.check_name(site, "site")
        s, r = ("site",), registry
        self.info = Gauge("parkctl_dr_event_active", "1 for each DR event in force now",
                          (*s, "event_id", "programme_id", "kind"), registry=r)  # fmt: skip
        self.baseline_kw = Gauge("parkctl_dr_baseline_kw", "Baseline grid import now (events in force)", s, registry=r)
        self.committed_kw = Gauge("parkctl_dr_committed_kw", "Reduction committed now (events in force)", s, registry=r)
        self.delivered_kw = Gauge("parkctl_dr_delivered_kw", "Baseline − grid import now", s, registry=r)
        self.ratio = Gauge("parkctl_dr_response_ratio", "Delivered ÷ committed now", s, registry=r)
        self.slot_ratio = Gauge("parkctl_dr_last_slot_response_ratio", "Response rate of the last assessed "
                                "quarter-hour", s, registry=r)  # fmt: skip
        self.events = Counter("parkctl_dr_events", "DR events by outcome", (*s, "outcome"), registry=r)
        for g in (self.baseline_kw, self.committed_kw, self.delivered_kw, self.ratio, self.slot_ratio):
            g.labels(self.site).set(NAN)
        for o in OUTCOMES:
            self.events.labels(self.site, o)
        self._info: set[tuple[str, str, str, str]] = set()

    def on_active(self, now: datetime, running: Sequence[Running], grid_kw: float | None) -> None:
        labels = {(self.site, x.spec.event_id, x.spec.programme_id, _kind(x.spec, now)) for x in running}
        for old in self._info - labels:
            self.info.remove(*old)
        for lab in labels:
            self.info.labels(*lab).set(1)
        self._info = labels
        site = self.site
        if not running:
            for g in (self.baseline_kw, self.committed_kw, self.delivered_kw, self.ratio):
                g.labels(site).set(NAN)
            return
        base = sum(x.baseline_kw for x in running) / len(running)  # overlapping events are refused upstream
        committed = sum(x.committed_kw for x in running)
        delivered = NAN if grid_kw is None else base - grid_kw
        self.baseline_kw.labels(site).set(base)
        self.committed_kw.labels(site).set(committed)
        self.delivered_kw.labels(site).set(delivered)
        self.ratio.labels(site).set(delivered / committed if committed > 0 else NAN)

    def on_slot(self, spec: DrEventSpec, result: SlotResult) -> None:
        rate = result.response_rate
        self.slot_ratio.labels(self.site).set(NAN if rate is None else rate)

    def on_outcome(self, spec: DrEventSpec, outcome: EventOutcome) -> None:
        self.count("cancelled" if spec.cancelled else "met" if outcome.met else "missed")

    def count(self, outcome: str) -> None:
        """Count an event that ended as ``outcome`` (one of :data:`OUTCOMES`)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        self.events.labels(self.site, outcome).inc()


def _kind(spec: DrEventSpec, now: datetime) -> str:
    iv = spec.interval_at(now)
    return iv.kind if iv is not None else "none"
