"""The DR event state machine: decide on each event, keep the decisions durably, feed planner and guards.

:meth:`DrManager.handle` answers every event with an ack: rejected (unknown programme, ends in the
past, overlaps another committed event, stale modification, cancel of an unknown event), accepted
(opted in or not, see :mod:`dr.config`), updated (a higher ``modificationNumber`` replaces the event)
or cancelled (a running commitment ends at once). An identical repeat (QoS 1 delivers twice) gets
the same ack again and changes nothing. Every decision is written to the store before the ack goes
out, so a restarted controller (:meth:`DrManager.load`) holds the same commitments.

States advance with the clock in :meth:`tick` (also a cycle observer): accepted -> active ->
completed. Call everything from the event loop's thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from controller.cycle import CycleReport
from dr.config import DrConfig
from dr.event import DrAck, DrEventSpec, EventState
from dr.persist import KIND_REJECTED, DrRecord, EventStore, load_records, record_to_payload, save_record
from dr.planning import asked_kw, cap_in_force, to_dr_events
from optimizer.inputs import DrEvent

log = logging.getLogger(__name__)

BaselineFn = Callable[[DrEventSpec], Sequence[float]]  # kW per quarter-hour slot (see dr.planning)
CapacityFn = Callable[[datetime, datetime], float]  # (start, end) -> kW the park can offer throughout
ChangeListener = Callable[[str], None]  # called with a reason, e.g. "dr event evt-1 accepted"


class DrManager:
    def __init__(
        self, config: DrConfig, store: EventStore, *, baseline_fn: BaselineFn | None = None,
        capacity_fn: CapacityFn | None = None, on_change: Iterable[ChangeListener] = (),
    ) -> None:  # fmt: skip
        self.config, self.store = config, store
        self.baseline_fn, self.capacity_fn = baseline_fn, capacity_fn
        self.on_change = list(on_change)
        self.records: dict[str, DrRecord] = {}
        self.decisions: Counter[str] = Counter()  # by code: accepted, updated, duplicate, or a reject code
        self._no_baseline: set[tuple[str, int]] = set()

    def load(self) -> int:
        """Take the events back from the store (after a restart); returns how many are committed."""
        self.records = {r.spec.event_id: r for r in load_records(self.store)}
        return sum(r.committed for r in self.records.values())

    # -- decisions ---------------------------------------------------------------------------------
    def handle(self, spec: DrEventSpec, now: datetime) -> DrAck:
        """Decide on a decoded event, persist the decision, tell the listeners; returns the ack to send."""
        old = self.records.get(spec.event_id)
        if old is not None:
            if _same(spec, old.spec):
                self.decisions["duplicate"] += 1
                return old.ack
            mod, old_mod = spec.modification_number, old.spec.modification_number
            if mod < old_mod or (mod == old_mod and not spec.cancelled):
                return self._reject(spec, now, "stale", f"modification {mod} is not newer than {old_mod}")
        if spec.cancelled:
            return self._cancel(spec, old, now)
        if spec.programme_id not in self.config.programmes:
            return self._reject(spec, now, "unknown_programme", f"unknown programme {spec.programme_id!r}")
        if spec.end <= now:
            return self._reject(spec, now, "event_in_past", f"event ended {spec.end.isoformat()}")
        for other in self.records.values():
            if other.spec.event_id != spec.event_id and other.committed and _overlaps(spec, other):
                return self._reject(spec, now, "overlap", f"overlap with {other.spec.event_id}")
        updating = old is not None and old.committed
        opt_in, reason, capacity = self._evaluate(spec, now, updating)
        status = "updated" if old is not None and old.state in ("accepted", "active") else "accepted"
        ack = DrAck(spec.event_id, spec.modification_number, status, opt_in, reason, round(capacity, 1), now)
        state: EventState = "active" if spec.start <= now else "accepted"
        return self._commit(DrRecord(spec, ack, state), old, now, status)

    def reject_malformed(self, event_id: str, modification_number: int, code: str, detail: str,
                         now: datetime) -> DrAck:  # fmt: skip
        """The ack for an event that failed to decode but whose id could be read (not stored as the event)."""
        self.decisions[code] += 1
        log.warning("DR event %s refused: %s: %s", event_id, code, detail)
        return DrAck(event_id, modification_number, "rejected", False, f"{code}: {detail}", 0.0, now)

    def _evaluate(self, spec: DrEventSpec, now: datetime, updating: bool) -> tuple[bool, str, float]:
        prog = self.config.programmes[spec.programme_id]
        baseline = self.baseline(spec)
        asked = asked_kw(spec, baseline)
        capacity = self.capacity_fn(max(spec.start, now), spec.end) if self.capacity_fn else asked
        why = []
        if not prog.auto_opt_in:
            why.append("auto_opt_in is off")
        lead_s, need_s = (spec.start - now).total_seconds(), prog.min_notice_s.get(spec.notice, 0.0)
        if not updating and max(lead_s, 0.0) < need_s:
            why.append(f"notice {max(lead_s, 0):.0f} s < {need_s:.0f} s for {spec.notice}")
        if baseline is None and any(iv.kind == "reduction" for iv in spec.intervals):
            why.append("no baseline for the reduction")
        if asked > 0 and capacity < prog.min_capacity_share * asked:
            why.append(f"capacity {capacity:.0f} kW < {prog.min_capacity_share:.0%} of {asked:.0f} kW asked")
        return not why, "; ".join(why) or "ok", capacity

    def _cancel(self, spec: DrEventSpec, old: DrRecord | None, now: datetime) -> DrAck:
        if old is None:
            return self._reject(spec, now, "unknown_event", f"no event {spec.event_id} to cancel")
        if old.state == "completed" or old.spec.end <= now:
            return self._reject(spec, now, "event_in_past", f"event {spec.event_id} is already over")
        running = old.state == "active" or old.spec.start <= now
        ended = old.ended if old.state == "cancelled" else (now if running else None)
        new_spec = dataclasses.replace(old.spec, cancelled=True, modification_number=spec.modification_number)
        ack = DrAck(spec.event_id, spec.modification_number, "cancelled", False,
                    "cancelled while running" if running else "cancelled", 0.0, now)  # fmt: skip
        return self._commit(DrRecord(new_spec, ack, "cancelled", ended), old, now, "cancelled")

    def _reject(self, spec: DrEventSpec, now: datetime, code: str, detail: str) -> DrAck:
        self.decisions[code] += 1
        log.warning("DR event %s (modification %d) rejected: %s", spec.event_id, spec.modification_number, detail)
        ack = DrAck(spec.event_id, spec.modification_number, "rejected", False, detail, 0.0, now)
        rec = DrRecord(spec, ack, "rejected")
        if spec.event_id in self.records:  # keep the event in force; log the refusal beside it
            self.store.record_event(KIND_REJECTED, record_to_payload(rec), state="rejected", ts=now,
                                    external_id=f"{spec.event_id}/{spec.modification_number}")  # fmt: skip
        else:
            save_record(self.store, rec, now)
            self.records[spec.event_id] = rec
        return ack

    def _commit(self, rec: DrRecord, old: DrRecord | None, now: datetime, code: str) -> DrAck:
        save_record(self.store, rec, now)  # durable before the ack goes out
        self.records[rec.spec.event_id] = rec
        self.decisions[code] += 1
        log.info("DR event %s (modification %d) %s: opt-in %s, %s", rec.spec.event_id,
                 rec.spec.modification_number, code, rec.ack.opt_in, rec.ack.reason)  # fmt: skip
        if rec.committed or (old is not None and old.committed):
            self._notify(f"dr event {rec.spec.event_id} {code}")
        return rec.ack

    def _notify(self, reason: str) -> None:
        for listener in self.on_change:
            try:
                listener(reason)
            except Exception:
                log.exception("DR change listener failed")

    # -- time --------------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """accepted -> active at the start, accepted/active -> completed at the end (persisted)."""
        for rec in list(self.records.values()):
            state = rec.state
            if state in ("accepted", "active") and rec.spec.end <= now:
                state = "completed"
            elif state == "accepted" and rec.spec.start <= now:
                state = "active"
            if state != rec.state:
                new = dataclasses.replace(rec, state=state)
                save_record(self.store, new, now)
                self.records[rec.spec.event_id] = new

    def on_cycle(self, report: CycleReport) -> None:
        self.tick(report.ts)

    # -- what the planner and the guards use --------------------------------------------------------
    def committed(self) -> list[DrRecord]:
        return sorted((r for r in self.records.values() if r.committed), key=lambda r: r.spec.start)

    def baseline(self, spec: DrEventSpec) -> tuple[float, ...] | None:
        """The event's baseline; None when there is none to be had.

        Not cached here: the baseline function decides what may be kept (a final baseline is fixed,
        a provisional one changes as the quarter-hours before the event close). A failure is cached
        per modification so the log says it once.
        """
        key = (spec.event_id, spec.modification_number)
        if self.baseline_fn is None or key in self._no_baseline:
            return None
        try:
            return tuple(float(v) for v in self.baseline_fn(spec))
        except Exception as exc:  # the history cannot give one: reductions cannot be committed
            log.warning("no baseline for DR event %s: %s", spec.event_id, exc)
            self._no_baseline.add(key)
            return None

    def dr_source(self, start: datetime, step_s: int, n: int) -> list[DrEvent]:
        """The planner's hook: every committed interval inside the horizon."""
        out = []
        fallback = max(p.penalty_cny_per_kwh for p in self.config.programmes.values())
        for rec in self.committed():
            prog = self.config.programmes.get(rec.spec.programme_id)  # gone from the config since: keep it
            penalty = prog.penalty_cny_per_kwh if prog is not None else fallback
            out += to_dr_events(rec.spec, self.baseline(rec.spec), start, step_s, n, penalty)
        return out

    def import_cap_at(self, ts: datetime) -> float | None:
        """The tightest import cap the committed events impose at ``ts``; None outside every event."""
        # every cycle asks: look up a baseline only for the events whose window holds ``ts``
        live = [r for r in self.committed() if r.spec.interval_at(ts) is not None]
        caps = [c for r in live if (c := cap_in_force(r.spec, self.baseline(r.spec), ts)) is not None]
        return min(caps, default=None)


def _same(a: DrEventSpec, b: DrEventSpec) -> bool:
    """A repeat of the same message: equal content, or a cancellation of an event already cancelled."""
    if a.modification_number != b.modification_number:
        return False
    return a == b or (a.cancelled and b.cancelled)


def _overlaps(spec: DrEventSpec, other: DrRecord) -> bool:
    return spec.start < other.spec.end and other.spec.start < spec.end
