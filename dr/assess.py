"""Glue between the DR manager and the ledger: one baseline per event, shared by planning and evidence.

:class:`BaselineBook` computes an event's :class:`~dr.baseline.Baseline` once per modification from
the store's closed quarter-hours (the programme's method; days of the park's other DR events
excluded, as the programmes require) and keeps it: ``book.kw`` is the manager's ``baseline_fn``,
``book.get`` gives the ledger the same figures with their inputs. :func:`manager_events` is the
ledger's event source: the events the park committed to once they have started, and those the grid
company cancelled while they ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol

from dr.baseline import Baseline, BaselineError, provisional_baseline
from dr.config import ProgrammeConfig
from dr.event import DrEventSpec
from dr.ledger import ActiveEvent, EventSource, History, fetch_baseline
from dr.persist import DrRecord


class Records(Protocol):
    """What :func:`manager_events` reads of :class:`dr.manager.DrManager`."""

    records: dict[str, DrRecord]


def event_days(spec: DrEventSpec, tz: tzinfo) -> set[date]:
    """Local days an event touches (its end is exclusive)."""
    days: set[date] = set()
    for iv in spec.intervals:
        d, last = iv.start.astimezone(tz).date(), (iv.end - timedelta(microseconds=1)).astimezone(tz).date()
        while d <= last:
            days.add(d)
            d += timedelta(days=1)
    return days


class BaselineBook:
    """Baselines per (event id, modification), computed on first use (raises BaselineError)."""

    def __init__(self, history: History, programmes: Mapping[str, ProgrammeConfig], tz: tzinfo, *,
                 holidays: frozenset[date] = frozenset(), other_events: Callable[[], Sequence[DrEventSpec]] = tuple,
                 lookback_days: int = 60, now: Callable[[], datetime] | None = None) -> None:  # fmt: skip
        self.history, self.programmes, self.tz = history, programmes, tz
        self.holidays, self.other_events, self.lookback_days = holidays, other_events, lookback_days
        self.now = now
        self._cache: dict[tuple[str, int], Baseline] = {}
        self._provisional: dict[tuple[str, int], tuple[int, tuple[float, ...]]] = {}

    def get(self, spec: DrEventSpec) -> Baseline:
        key = (spec.event_id, spec.modification_number)
        if key not in self._cache:
            excluded = self._excluded(spec)
            method = self.programmes[spec.programme_id].baseline
            self._cache[key] = fetch_baseline(self.history, spec, method, tz=self.tz, holidays=self.holidays,
                                              excluded_days=excluded, lookback_days=self.lookback_days)  # fmt: skip
        return self._cache[key]

    def kw(self, spec: DrEventSpec) -> tuple[float, ...]:
        """The manager's ``baseline_fn``: kW per quarter-hour slot of the event.

        The judged baseline once its inputs are in; before that (a 10-in-10 adjustment window or the
        quarter-hour before a real-time event still open) the provisional estimate, so the event can
        be planned from the moment it is accepted. Re-plans pick up the final figures.
        """
        key = (spec.event_id, spec.modification_number)
        # at most one try per quarter-hour while the final figures cannot be had (a query of weeks of
        # history every cycle would cost more than the cycle)
        quarter = int(self.now().timestamp() // 900) if self.now is not None else None
        held = self._provisional.get(key)
        if held is not None and quarter is not None and held[0] == quarter:
            return held[1]
        try:
            return self.get(spec).kw
        except BaselineError:
            method = self.programmes[spec.programme_id].baseline
            since = spec.start - timedelta(days=self.lookback_days + 1)
            kw = provisional_baseline(method, self.history.intervals(since, closed_only=True), spec.start,
                                      spec.end, tz=self.tz, holidays=self.holidays, excluded_days=self._excluded(spec),
                                      invited=spec.created.astimezone(self.tz).date(),
                                      lookback_days=self.lookback_days).kw  # fmt: skip
            if quarter is not None:
                self._provisional[key] = (quarter, kw)
            return kw

    def _excluded(self, spec: DrEventSpec) -> frozenset[date]:
        return frozenset(d for o in self.other_events() if o.event_id != spec.event_id for d in event_days(o, self.tz))


def manager_events(manager: Records, book: BaselineBook, programmes: Mapping[str, ProgrammeConfig]) -> EventSource:
    """The ledger's source: committed events from their start, and events cancelled while running."""

    def events(now: datetime) -> list[ActiveEvent]:
        out = []
        for rec in list(manager.records.values()):
            spec = rec.spec
            running = rec.committed and spec.start <= now < spec.end
            stopped = rec.state == "cancelled" and rec.ended is not None
            prog = programmes.get(spec.programme_id)
            if not (running or stopped) or prog is None or not spec.intervals:
                continue
            try:
                baseline = book.get(spec)
            except Exception:  # no baseline, nothing to assess against (the manager logged why)
                continue
            out.append(ActiveEvent(spec, baseline, prog.threshold, prog.price_cny_per_kwh, rec.ended))
        return out

    return events
