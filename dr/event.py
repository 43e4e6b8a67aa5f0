"""A demand-response event as the controller understands it, whatever wire format it came in.

The wire format (OpenADR-3-shaped JSON over MQTT) is parsed in :mod:`dr.wire`; everything after that
(acceptance, planning, baselines, performance, reports) works on these frozen values. An event is a
run of consecutive intervals, each either an import cap (kW the park may draw at most) or a required
reduction (kW below the programme's baseline). Times are timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

IntervalKind = Literal["import_cap", "reduction"]
Notice = Literal["DAY_AHEAD", "PRE_AGREED", "REAL_TIME"]
# Lifecycle of an event in the controller: received -> accepted | rejected; accepted -> active ->
# completed; accepted | active -> cancelled (by the grid company) or superseded (by a newer
# modification, which takes over the same event id).
EventState = Literal["accepted", "rejected", "active", "completed", "cancelled"]
ACK_STATUSES: tuple[str, ...] = ("accepted", "rejected", "cancelled", "updated")


@dataclass(frozen=True, slots=True)
class DrInterval:
    """One interval of an event: ``value_kw`` is the cap (import_cap) or the reduction asked (reduction)."""

    start: datetime
    end: datetime
    kind: IntervalKind
    value_kw: float

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class DrEventSpec:
    """An event as sent by the grid company (after validation and normalisation)."""

    event_id: str
    programme_id: str
    modification_number: int
    priority: int  # OpenADR: 0 is the highest priority
    notice: Notice
    created: datetime
    intervals: tuple[DrInterval, ...]
    cancelled: bool = False

    @property
    def start(self) -> datetime:
        return self.intervals[0].start

    @property
    def end(self) -> datetime:
        return self.intervals[-1].end

    def interval_at(self, ts: datetime) -> DrInterval | None:
        for iv in self.intervals:
            if iv.start <= ts < iv.end:
                return iv
        return None


@dataclass(frozen=True, slots=True)
class DrAck:
    """The park's answer on the acknowledgement topic: accepted with an opt-in and capacity, or why not."""

    event_id: str
    modification_number: int
    status: str  # one of ACK_STATUSES
    opt_in: bool
    reason: str
    capacity_kw: float
    ts: datetime
