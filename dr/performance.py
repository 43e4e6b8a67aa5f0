"""How well the park answered an event: per quarter-hour and for the whole event.

Pure arithmetic on what the ledger recorded. Per slot: delivered kW = baseline − actual (grid
import, + when the park drew less than its baseline); committed kW = the reduction asked, or for an
import cap max(0, baseline − cap) (a cap above the baseline asks for nothing). A slot the event
covers only in part counts for that part: kWh figures are scaled by the covered fraction.

Event level: response rate = delivered kWh ÷ committed kWh (per slot, delivered kW ÷ committed kW);
``met`` = rate ≥ the programme's threshold. Settlement estimate = delivered kWh × price, and never
negative: the programmes pay for delivered energy; penalties for missing are programme-specific
and not modelled here (``met`` says whether one may apply). A slot without a meter reading
delivers nothing (and is flagged incomplete).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dr.event import DrEventSpec

SLOT = timedelta(minutes=15)
SLOT_H = 0.25


@dataclass(frozen=True, slots=True)
class SlotResult:
    """One quarter-hour of an event, as recorded (see module doc for the rules)."""

    slot_start: datetime
    baseline_kw: float
    actual_kw: float | None
    committed_kw: float
    fraction: float = 1.0  # share of the slot inside the event
    battery_kwh: float = 0.0  # discharge − charge in the slot (+: the battery helped)
    shed_kwh: Mapping[str, float] = field(default_factory=dict)
    complete: bool = True

    @property
    def delivered_kw(self) -> float | None:
        return None if self.actual_kw is None else self.baseline_kw - self.actual_kw

    @property
    def delivered_kwh(self) -> float:
        d = self.delivered_kw
        return 0.0 if d is None else d * SLOT_H * self.fraction

    @property
    def committed_kwh(self) -> float:
        return self.committed_kw * SLOT_H * self.fraction

    @property
    def response_rate(self) -> float | None:
        """delivered ÷ committed kW; None when nothing was committed or nothing measured."""
        d = self.delivered_kw
        return None if d is None or self.committed_kw <= 0 else d / self.committed_kw


@dataclass(frozen=True, slots=True)
class EventOutcome:
    delivered_kwh: float
    committed_kwh: float
    response_rate: float | None  # None: nothing committed
    met: bool
    threshold: float
    settlement_cny: float
    battery_kwh: float
    shed_kwh: dict[str, float]
    slots: int
    complete_slots: int
    hours: float = 0.0  # event time assessed

    @property
    def mean_delivered_kw(self) -> float | None:
        """Jiangsu's response: (baseline − metered energy over the window) ÷ window length."""
        return self.delivered_kwh / self.hours if self.hours > 0 else None


def committed_kw(spec: DrEventSpec, slot_start: datetime, baseline_kw: float) -> tuple[float, float]:
    """(committed kW averaged over the part of the slot in the event, that part as a fraction)."""
    end = slot_start + SLOT
    kw_s = covered_s = 0.0
    for iv in spec.intervals:
        a, b = max(iv.start, slot_start), min(iv.end, end)
        if b <= a:
            continue
        s = (b - a).total_seconds()
        ask = iv.value_kw if iv.kind == "reduction" else max(0.0, baseline_kw - iv.value_kw)
        kw_s += ask * s
        covered_s += s
    if covered_s == 0:
        return 0.0, 0.0
    return kw_s / covered_s, covered_s / SLOT.total_seconds()


def assess_slot(
    spec: DrEventSpec,
    slot_start: datetime,
    baseline_kw: float,
    actual_kw: float | None,
    *,
    battery_kwh: float = 0.0,
    shed_kwh: Mapping[str, float] | None = None,
    complete: bool = True,
) -> SlotResult:
    """The result of one quarter-hour of ``spec``."""
    ckw, frac = committed_kw(spec, slot_start, baseline_kw)
    return SlotResult(slot_start, baseline_kw, actual_kw, ckw, frac, battery_kwh, dict(shed_kwh or {}),
                      complete and actual_kw is not None)  # fmt: skip


def summarise(results: Sequence[SlotResult], threshold: float, price_cny_per_kwh: float) -> EventOutcome:
    """The event's totals and whether it met the programme's ``threshold``.

    An event that asked for nothing beyond the baseline (an import cap above it throughout) has no
    response rate; it is met when the park drew no more than its baseline.
    """
    delivered = sum(r.delivered_kwh for r in results)
    committed = sum(r.committed_kwh for r in results)
    rate = delivered / committed if committed > 0 else None
    shed: dict[str, float] = {}
    for r in results:
        for lid, kwh in r.shed_kwh.items():
            shed[lid] = shed.get(lid, 0.0) + kwh
    return EventOutcome(
        delivered_kwh=delivered,
        committed_kwh=committed,
        response_rate=rate,
        met=rate >= threshold if rate is not None else bool(results) and delivered >= 0.0,
        threshold=threshold,
        settlement_cny=max(0.0, delivered) * price_cny_per_kwh,
        battery_kwh=sum(r.battery_kwh for r in results),
        shed_kwh=shed,
        slots=len(results),
        complete_slots=sum(r.complete for r in results),
        hours=sum(r.fraction for r in results) * SLOT_H,
    )
