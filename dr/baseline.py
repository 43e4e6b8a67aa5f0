"""Customer baselines: what the park would have drawn from the grid had there been no event.

The quantity is the park's net grid import per quarter-hour (``mean_grid_kw`` of ``history_15min``).
Three methods, from the programmes the park takes part in:

* ``five_day`` (Jiangsu, pre-agreed / day-ahead events): per slot, the mean of the 5 most recent
  normal working days before the invitation day. Weekends and ``holidays`` are not working days,
  ``extra_workdays`` (China's make-up working weekends) are; ``excluded_days`` (days with a DR
  event) are skipped. No adjustment.
* ``ten_in_ten`` (CAISO): the mean of the 10 most recent like days (weekdays, same exclusions),
  times a day-of adjustment = actual ÷ baseline energy over the window 4 h to 1 h before the event,
  capped to 0.8–1.2. When the window's baseline energy is not positive (a park exporting), a ratio
  means nothing and the factor is 1.
* ``pre_event_15min`` (Jiangsu, real-time events): every slot gets the mean of the quarter-hour
  just before control starts.

A day is usable only if every quarter-hour the method needs from it is present, closed and metered
for at least ``min_coverage`` of its 900 s; a day with one hole is skipped whole (averaging over a
partial day would bias the slots that are missing). ``start`` is floored and ``end`` ceiled to the
quarter-hour grid. Every row used is kept in :attr:`Baseline.inputs`, so the figure can be redone
by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Literal

from controller.history import INTERVAL_US, Interval, from_us, to_us
from parkctl.errors import ParkError

Method = Literal["five_day", "ten_in_ten", "pre_event_15min"]
METHODS: tuple[Method, ...] = ("five_day", "ten_in_ten", "pre_event_15min")
SLOT = timedelta(minutes=15)
DAYS_NEEDED = {"five_day": 5, "ten_in_ten": 10}
ADJ_MIN, ADJ_MAX = 0.8, 1.2


class BaselineError(ParkError):
    """The history cannot give this baseline (too few usable days, a missing quarter-hour...)."""


@dataclass(frozen=True, slots=True)
class Baseline:
    """Baseline kW per quarter-hour slot of ``[start, end)``, and how it was obtained."""

    method: Method
    slots: tuple[datetime, ...]
    kw: tuple[float, ...]  # adjusted, one per slot
    days_used: tuple[date, ...]
    adjustment: float
    inputs: tuple[tuple[datetime, float], ...]  # (slot start, mean grid kW) of every history row used

    def kw_at(self, ts: datetime) -> float | None:
        """Baseline of the slot containing ``ts`` (None outside the baseline)."""
        for s, kw in zip(self.slots, self.kw, strict=True):
            if s <= ts < s + SLOT:
                return kw
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "slots": [s.isoformat() for s in self.slots],
            "kw": list(self.kw),
            "days_used": [d.isoformat() for d in self.days_used],
            "adjustment": self.adjustment,
            "inputs": [[t.isoformat(), kw] for t, kw in self.inputs],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Baseline:
        iso = datetime.fromisoformat
        return cls(d["method"], tuple(iso(s) for s in d["slots"]), tuple(float(k) for k in d["kw"]),
                   tuple(date.fromisoformat(x) for x in d["days_used"]), float(d["adjustment"]),
                   tuple((iso(t), float(k)) for t, k in d["inputs"]))  # fmt: skip


def slot_grid(start: datetime, end: datetime) -> tuple[datetime, ...]:
    """Quarter-hour starts covering ``[start, end)`` (start floored, end ceiled)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise BaselineError("start and end must be timezone-aware")
    if end <= start:
        raise BaselineError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    a = to_us(start) - to_us(start) % INTERVAL_US
    out = []
    while a < to_us(end):
        out.append(from_us(a, start.tzinfo))
        a += INTERVAL_US
    return tuple(out)


def compute_baseline(
    method: Method,
    intervals: Sequence[Interval],
    start: datetime,
    end: datetime,
    *,
    tz: tzinfo,
    holidays: frozenset[date] = frozenset(),
    excluded_days: frozenset[date] = frozenset(),
    extra_workdays: frozenset[date] = frozenset(),
    invited: date | None = None,
    lookback_days: int = 60,
    min_coverage: float = 0.9,
    adjust: bool = True,
) -> Baseline:
    """The ``method`` baseline of ``[start, end)`` from closed quarter-hours ``intervals``.

    ``invited``: the invitation day (five_day counts days before it; default the event's local day).
    ``adjust=False`` leaves out the ten_in_ten day-of adjustment (factor 1): what can be known before
    the adjustment window has closed. Raises :class:`BaselineError` saying what is missing.
    """
    if method not in METHODS:
        raise BaselineError(f"baseline method {method!r} is not one of {', '.join(METHODS)}")
    slots = tuple(s.astimezone(tz) for s in slot_grid(start, end))
    kw_by_us = {iv.start_us: kw for iv in intervals if (kw := _usable_kw(iv, min_coverage)) is not None}

    if method == "pre_event_15min":
        before = slots[0] - SLOT
        kw = kw_by_us.get(to_us(before))
        if kw is None:
            raise BaselineError(f"pre_event_15min baseline needs the quarter-hour {before.isoformat()}: "
                                "not in the history (or not closed, or not fully metered)")  # fmt: skip
        return Baseline(method, slots, (kw,) * len(slots), (before.date(),), 1.0, ((before, kw),))

    event_day = slots[0].date()
    window = _adjust_window(slots[0]) if method == "ten_in_ten" and adjust else ()
    needed = [(_day_offset(s, event_day), s.timetz()) for s in (*slots, *window)]
    last_day = (invited or event_day) if method == "five_day" else event_day
    want = DAYS_NEEDED[method]
    days: list[date] = []
    rows: dict[date, list[float]] = {}
    for back in range(1, lookback_days + 1):
        d = last_day - timedelta(days=back)
        if d in excluded_days or not _workday(d, holidays, extra_workdays):
            continue
        vals = [kw_by_us.get(to_us(datetime.combine(d + timedelta(days=off), t.replace(tzinfo=None), tz)))
                for off, t in needed]  # fmt: skip
        if any(v is None for v in vals):
            continue
        rows[d] = [v for v in vals if v is not None]
        days.append(d)
        if len(days) == want:
            break
    if len(days) < want:
        found = f" ({', '.join(x.isoformat() for x in sorted(days))})" if days else ""
        raise BaselineError(f"{method} baseline needs {want} usable working days in the {lookback_days} days "
                            f"before {last_day.isoformat()}; found {len(days)}{found}")  # fmt: skip
    n = len(slots)
    raw = [sum(rows[d][i] for d in days) / want for i in range(len(needed))]
    inputs = [(datetime.combine(d + timedelta(days=off), t.replace(tzinfo=None), tz), rows[d][i])
              for d in sorted(days) for i, (off, t) in enumerate(needed)]  # fmt: skip
    factor = 1.0
    if window:
        actual = [kw_by_us.get(to_us(w)) for w in window]
        if any(a is None for a in actual):
            gaps = [w.isoformat() for w, a in zip(window, actual, strict=True) if a is None]
            raise BaselineError(f"ten_in_ten day-of adjustment needs the quarter-hours 4 h to 1 h before the "
                                f"event; missing {', '.join(gaps)}")  # fmt: skip
        inputs += [(w, a) for w, a in zip(window, actual, strict=True) if a is not None]
        base_sum = sum(raw[n:])
        act_sum = sum(a for a in actual if a is not None)
        factor = min(ADJ_MAX, max(ADJ_MIN, act_sum / base_sum)) if base_sum > 0 else 1.0
    kws = tuple(k * factor for k in raw[:n])
    return Baseline(method, slots, kws, tuple(sorted(days)), factor, tuple(inputs))


def _usable_kw(iv: Interval, min_coverage: float) -> float | None:
    if not iv.closed or iv.covered_us < min_coverage * INTERVAL_US:
        return None
    return iv.mean_grid_kw()


def _adjust_window(first: datetime) -> tuple[datetime, ...]:
    """The 12 quarter-hours from 4 h to 1 h before the event (CAISO day-of adjustment)."""
    return slot_grid(first - timedelta(hours=4), first - timedelta(hours=1))


def _day_offset(s: datetime, day: date) -> int:
    return (s.date() - day).days


def _workday(d: date, holidays: frozenset[date], extra_workdays: frozenset[date]) -> bool:
    if d in extra_workdays:
        return True
    return d.weekday() < 5 and d not in holidays


def provisional_baseline(method: Method, intervals: Sequence[Interval], start: datetime, end: datetime, *,
                         tz: tzinfo, **kw: Any) -> Baseline:  # fmt: skip
    """The best estimate of a baseline whose inputs are not all in yet, for planning only.

    An event is planned when it is accepted, before the data some methods need exists: the 10-in-10
    day-of adjustment closes 1 h before the event, the quarter-hour before a real-time event closes as
    it starts. Until then the planner works from the unadjusted 10-in-10 mean, or from the most recent
    closed quarter-hour before the event. The baseline that is judged is always :func:`compute_baseline`
    once it can be computed; this one is never stored as evidence.
    """
    if method == "ten_in_ten":
        return compute_baseline(method, intervals, start, end, tz=tz, adjust=False, **kw)
    if method == "pre_event_15min":
        slots = tuple(s.astimezone(tz) for s in slot_grid(start, end))
        cov = float(kw.get("min_coverage", 0.9))
        usable = [iv for iv in intervals if iv.start_us < to_us(slots[0]) and _usable_kw(iv, cov) is not None]
        if not usable:
            raise BaselineError("no closed quarter-hour before the event to estimate its baseline from")
        last = max(usable, key=lambda iv: iv.start_us)
        value = _usable_kw(last, cov)
        assert value is not None
        at = from_us(last.start_us, tz)
        return Baseline(method, slots, (value,) * len(slots), (at.date(),), 1.0, ((at, value),))
    return compute_baseline(method, intervals, start, end, tz=tz, **kw)
