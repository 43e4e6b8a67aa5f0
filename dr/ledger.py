"""The demand-response ledger: a cycle observer writing each quarter-hour of a running event.

Register it *after* the Store among the runtime's observers: a slot's row is written once the
Store has closed that quarter-hour in ``history_15min`` (actual kW and battery kWh come from there,
so they follow the history's exact integration rule and survive a restart). What the history does
not hold, the energy each interruptible load did not draw, is integrated here from the cycle
reports, left-rectangle like the history: after each cycle, a load counts as shed until the next
cycle (at most ``max_hold_s``) if the controller had commanded it shed and its last reading does
not show it running; it is worth its ``nominal_kw`` (else the last power it was seen drawing).

The baseline is fixed when the ledger first sees the event run; a later modification replaces the
intervals judged (the quarter-hours already written stay as they were) but not the baseline.

Restart: on its first cycle the ledger reloads the events whose rows are not all written (baseline
and terms are in the database, never recomputed), and writes every quarter-hour the history has
closed meanwhile. Those rows, and the one open at the restart, are ``complete = 0``: their shed
energy was not (fully) observed. A slot is complete when the history metered and the ledger
observed at least ``min_coverage`` of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol

from controller.cycle import CycleReport
from controller.history import INTERVAL_US, Interval, floor_us, from_us, to_us
from dr.baseline import Baseline, Method, compute_baseline
from dr.event import DrEventSpec, DrInterval
from dr.evidence import Evidence, StoredBaseline
from dr.performance import EventOutcome, SlotResult, assess_slot, summarise

log = logging.getLogger(__name__)
_US_PER_H = 3_600_000_000


class History(Protocol):
    """What the ledger reads from the Store."""

    def intervals(self, since: datetime | None = None, *, closed_only: bool = False) -> list[Interval]: ...


class DrObserver(Protocol):
    """Told each cycle what runs, of each written slot and each finished event (:class:`dr.metrics.DrMetrics`)."""

    def on_active(self, now: datetime, running: Sequence[Running], grid_kw: float | None) -> None: ...
    def on_slot(self, spec: DrEventSpec, result: SlotResult) -> None: ...
    def on_outcome(self, spec: DrEventSpec, outcome: EventOutcome) -> None: ...


@dataclass(frozen=True, slots=True)
class ActiveEvent:
    """An accepted event to assess, with the baseline fixed for it and its programme's terms."""

    spec: DrEventSpec
    baseline: Baseline
    threshold: float
    price_cny_per_kwh: float
    stopped: datetime | None = None  # with spec.cancelled: when it stopped (default: the cycle that sees it)


@dataclass(frozen=True, slots=True)
class Running:
    """An event in force at a cycle: its baseline and commitment at that instant."""

    spec: DrEventSpec
    baseline_kw: float
    committed_kw: float


EventSource = Callable[[datetime], Sequence[ActiveEvent]]


@dataclass
class _Acc:
    observed_us: int = 0
    shed_kwh: dict[str, float] = field(default_factory=dict)


def fetch_baseline(history: History, spec: DrEventSpec, method: Method, *, tz: tzinfo,
                   holidays: frozenset[date] = frozenset(), excluded_days: frozenset[date] = frozenset(),
                   lookback_days: int = 60) -> Baseline:  # fmt: skip
    """The baseline of ``spec`` from the store's closed quarter-hours (raises BaselineError)."""
    since = spec.start - timedelta(days=lookback_days + 1)
    return compute_baseline(method, history.intervals(since, closed_only=True), spec.start, spec.end, tz=tz,
                            holidays=holidays, excluded_days=excluded_days, invited=spec.created.astimezone(tz).date(),
                            lookback_days=lookback_days)  # fmt: skip


def truncated(spec: DrEventSpec, stop: datetime | None) -> DrEventSpec:
    """``spec`` with its intervals cut at ``stop`` (a cancellation while running)."""
    if stop is None:
        return spec
    ivs = tuple(DrInterval(iv.start, min(iv.end, stop), iv.kind, iv.value_kw) for iv in spec.intervals
                if iv.start < stop)  # fmt: skip
    return replace(spec, intervals=ivs or spec.intervals[:1])


class DrLedger:
    """Cycle observer; see the module doc. ``events(now)`` lists the events to assess now."""

    def __init__(self, history: History, records: Evidence, events: EventSource, *,
                 nominal_kw: Mapping[str, float] | None = None, max_hold_s: float = 30.0,
                 min_coverage: float = 0.98, observers: Sequence[DrObserver] = (),
                 give_up_s: float = 86400.0) -> None:  # fmt: skip
        self.history, self.records, self.events = history, records, events
        self.nominal_kw = dict(nominal_kw or {})
        self.max_hold_us = round(max_hold_s * 1e6)
        self.min_us = min_coverage * INTERVAL_US
        self.observers = list(observers)
        self.give_up_us = round(give_up_s * 1e6)  # a slot the history lacks this long after it ended: unmetered
        self._tracked: dict[str, StoredBaseline] = {}
        self._written: dict[str, set[int]] = {}
        self._acc: dict[int, _Acc] = {}
        self._commanded: dict[str, bool] = {}
        self._seen_kw: dict[str, float] = {}
        self._prev: CycleReport | None = None
        self._started = False

    @property
    def tracked(self) -> list[str]:
        return sorted(self._tracked)

    def on_cycle(self, report: CycleReport) -> None:
        if not self._started:
            self._started = True
            for eid in self.records.event_ids():
                self._track(eid)
        for ev in self.events(report.ts):
            eid = ev.spec.event_id
            if eid not in self._tracked and ev.spec.cancelled:
                continue  # cancelled before the ledger saw it run: nothing to assess
            if eid not in self._tracked:
                self.records.save_baseline(ev.spec, ev.baseline, threshold=ev.threshold,
                                           price_cny_per_kwh=ev.price_cny_per_kwh, computed_ts=report.ts)  # fmt: skip
                self._track(eid)
            sb = self._tracked.get(eid)
            if sb is not None and ev.spec.modification_number > sb.spec.modification_number and not ev.spec.cancelled:
                self.records.update_spec(ev.spec)
                sb = self._tracked[eid] = replace(sb, spec=ev.spec)
            if sb is not None and ev.spec.cancelled and sb.stopped_ts is None:
                stop = ev.stopped or report.ts
                self.records.stop(eid, stop)
                self._tracked[eid] = replace(sb, stopped_ts=stop)
        self._accumulate(report)
        if self._tracked:
            self._write_closed(report.ts)
        if self.observers:
            self._notify(report)

    # -- internals -------------------------------------------------------------------------------
    def _track(self, eid: str) -> None:
        sb = self.records.baseline(eid)
        if sb is None:
            return
        written = {to_us(r.slot_start) for r in self.records.slots(eid)}
        if len(written) < len(self._due(sb)):
            self._tracked[eid], self._written[eid] = sb, written

    @staticmethod
    def _due(sb: StoredBaseline) -> list[datetime]:
        """The slots to assess: those of the baseline that start before the event ended or stopped."""
        end = sb.spec.end if sb.stopped_ts is None else min(sb.spec.end, sb.stopped_ts)
        return [s for s in sb.baseline.slots if s < end]

    def _accumulate(self, r: CycleReport) -> None:
        prev, self._prev = self._prev, r
        for lid, reading in r.snapshot.loads.items():
            if reading is not None and reading.running and reading.p_kw > 0:
                self._seen_kw[lid] = reading.p_kw
        # what was commanded after ``prev`` (loads absent from a Setpoints keep their last command)
        shed_kw = {}
        for lid, on in self._commanded.items():
            reading = None if prev is None else prev.snapshot.loads.get(lid)
            if on and (reading is None or not reading.running):
                shed_kw[lid] = self.nominal_kw.get(lid, self._seen_kw.get(lid, 0.0))
        self._commanded.update(r.setpoints.load_shed)
        if prev is None or not self._tracked:
            return
        a = to_us(prev.ts)
        b = min(to_us(r.ts), a + self.max_hold_us)
        while a < b:
            slot = floor_us(a)
            end = min(b, slot + INTERVAL_US)
            acc = self._acc.setdefault(slot, _Acc())
            acc.observed_us += end - a
            for lid, kw in shed_kw.items():
                acc.shed_kwh[lid] = acc.shed_kwh.get(lid, 0.0) + kw * (end - a) / _US_PER_H
            a = end

    def _write_closed(self, now: datetime) -> None:
        now_us = to_us(now)
        pending = {eid: [s for s in self._due(sb) if to_us(s) + INTERVAL_US <= now_us
                         and to_us(s) not in self._written[eid]] for eid, sb in self._tracked.items()}  # fmt: skip
        first = min((s for ss in pending.values() for s in ss), default=None)
        closed = {} if first is None else {iv.start_us: iv for iv in self.history.intervals(first, closed_only=True)}
        for eid, slots in pending.items():
            sb = self._tracked[eid]
            spec = truncated(sb.spec, sb.stopped_ts)
            if sb.stopped_ts is not None:
                spec = replace(spec, cancelled=True)
            for s in slots:
                iv = closed.get(to_us(s))
                if iv is None and to_us(s) + INTERVAL_US + self.give_up_us > now_us:
                    continue  # the Store has not closed it yet (busy): next cycle
                if iv is None:  # the history will never have it (database restored, rows pruned)
                    log.warning("DR event %s: no history for %s; recorded as unmetered", eid, s.isoformat())
                    iv = Interval(to_us(s), closed=True)
                result = self._assess(spec, sb.baseline, s, iv)
                self.records.save_slot(eid, result)
                self._written[eid].add(to_us(s))
                for o in self.observers:
                    o.on_slot(spec, result)
            if len(self._written[eid]) >= len(self._due(sb)):
                outcome = summarise(self.records.slots(eid), sb.threshold, sb.price_cny_per_kwh)
                log.info("DR event %s assessed: %.1f of %.1f kWh delivered", eid, outcome.delivered_kwh,
                         outcome.committed_kwh)  # fmt: skip
                for o in self.observers:
                    o.on_outcome(spec, outcome)
                del self._tracked[eid], self._written[eid]
        keep = min((to_us(s) for ss in pending.values() for s in ss if to_us(s) not in closed), default=now_us)
        for slot in [k for k in self._acc if k < floor_us(keep)]:
            del self._acc[slot]

    def _notify(self, r: CycleReport) -> None:
        running = []
        for sb in self._tracked.values():
            spec = truncated(sb.spec, sb.stopped_ts)
            iv, base = spec.interval_at(r.ts), sb.baseline.kw_at(r.ts)
            if iv is not None and base is not None and not (sb.stopped_ts and r.ts >= sb.stopped_ts):
                ask = iv.value_kw if iv.kind == "reduction" else max(0.0, base - iv.value_kw)
                running.append(Running(spec, base, ask))
        grid = r.snapshot.meter.p_kw if r.snapshot.meter is not None else None
        for o in self.observers:
            o.on_active(r.ts, running, grid)

    def _assess(self, spec: DrEventSpec, baseline: Baseline, s: datetime, iv: Interval) -> SlotResult:
        acc = self._acc.get(to_us(s), _Acc())
        base = baseline.kw_at(s)
        assert base is not None
        complete = iv.covered_us >= self.min_us and acc.observed_us >= self.min_us
        return assess_slot(spec, from_us(to_us(s), s.tzinfo), base, iv.mean_grid_kw(),
                           battery_kwh=iv.discharge_kwh - iv.charge_kwh, shed_kwh=acc.shed_kwh,
                           complete=complete)  # fmt: skip
