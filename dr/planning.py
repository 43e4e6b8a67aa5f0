"""From committed DR events to what the planner and the guards use: optimiser DrEvents, the cap now.

The baseline of an event is one kW per quarter-hour slot from the event's start floored to the
quarter-hour (``dr.baseline.slot_grid``) to its end. A plan step takes the mean of the slots it
overlaps; an interval that covers part of a step constrains the whole step (the safe side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from dr.event import DrEventSpec, DrInterval
from optimizer.inputs import DrEvent

SLOT_S = 900


def slot0(spec: DrEventSpec) -> datetime:
    """Start of the event's first baseline slot (the start floored to the quarter-hour, epoch-aligned)."""
    s = spec.start
    return s - timedelta(seconds=s.timestamp() % SLOT_S)


def baseline_at(spec: DrEventSpec, baseline: Sequence[float], ts: datetime) -> float | None:
    i = math.floor((ts - slot0(spec)).total_seconds() / SLOT_S)
    return baseline[i] if 0 <= i < len(baseline) else None


def baseline_slots(spec: DrEventSpec, baseline: Sequence[float], a: datetime, b: datetime) -> Sequence[float]:
    """The slots overlapping ``[a, b)``; empty when one of them is missing."""
    first = math.floor((a - slot0(spec)).total_seconds() / SLOT_S)
    last = math.ceil((b - slot0(spec)).total_seconds() / SLOT_S)
    if first < 0 or last > len(baseline) or last <= first:
        return ()
    return baseline[first:last]


def baseline_mean(spec: DrEventSpec, baseline: Sequence[float], a: datetime, b: datetime) -> float | None:
    """Mean of the slots overlapping ``[a, b)``; None when one of them is missing."""
    slots = baseline_slots(spec, baseline, a, b)
    return sum(slots) / len(slots) if slots else None


def asked_kw(spec: DrEventSpec, baseline: Sequence[float] | None) -> float:
    """The largest reduction the event asks for in any quarter-hour: a cap asks for baseline − cap
    (nothing without a baseline)."""
    asked = 0.0
    for iv in spec.intervals:
        if iv.kind == "reduction":
            asked = max(asked, iv.value_kw)
        elif baseline is not None:
            asked = max([asked, *(b - iv.value_kw for b in baseline_slots(spec, baseline, iv.start, iv.end))])
    return asked


def cap_in_force(spec: DrEventSpec, baseline: Sequence[float] | None, ts: datetime) -> float | None:
    """The import cap the event commits the park to at ``ts`` (a reduction: baseline − reduction)."""
    iv = spec.interval_at(ts)
    if iv is None:
        return None
    if iv.kind == "import_cap":
        return iv.value_kw
    b = baseline_at(spec, baseline, ts) if baseline is not None else None
    return None if b is None else max(b - iv.value_kw, 0.0)


def to_dr_events(
    spec: DrEventSpec, baseline: Sequence[float] | None, start: datetime, step_s: int, n: int,
    penalty_cny_per_kwh: float, since: datetime | None = None,
) -> list[DrEvent]:  # fmt: skip
    """One optimiser DrEvent per interval that falls in the horizon (from ``since`` if given)."""
    out = []
    for k, iv in enumerate(spec.intervals):
        a = iv.start if since is None else max(iv.start, since)
        first = max(math.floor((a - start).total_seconds() / step_s), 0)
        end = min(math.ceil((iv.end - start).total_seconds() / step_s), n)
        if end <= first:
            continue
        ev_id = f"{spec.event_id}#{k}"
        if iv.kind == "import_cap":
            out.append(DrEvent(id=ev_id, kind="import_cap", first_step=first, end_step=end,
                               penalty_cny_per_kwh=penalty_cny_per_kwh, cap_kw=iv.value_kw))  # fmt: skip
            continue
        steps = [_step_baseline(spec, baseline, iv, start + timedelta(seconds=t * step_s), step_s)
                 for t in range(first, end)]  # fmt: skip
        if any(b is None for b in steps):
            continue  # no baseline for this interval: nothing the optimiser could settle against
        out.append(DrEvent(id=ev_id, kind="reduction", first_step=first, end_step=end,
                           penalty_cny_per_kwh=penalty_cny_per_kwh, committed_kw=iv.value_kw,
                           baseline_kw=[float(b or 0.0) for b in steps]))  # fmt: skip
    return out


def _step_baseline(
    spec: DrEventSpec, baseline: Sequence[float] | None, iv: DrInterval, t: datetime, step_s: int
) -> float | None:
    if baseline is None:
        return None
    a, b = max(t, iv.start), min(t + timedelta(seconds=step_s), iv.end)
    return baseline_mean(spec, baseline, a, b)
