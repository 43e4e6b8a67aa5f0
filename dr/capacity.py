"""How much the park can take off the grid for a whole window: what an acknowledgement offers.

Firm capacity only, because a cap or a committed reduction must hold to the end of the window:

* a battery offers the energy above its minimum SoC (after discharge losses) spread evenly over the
  window, but never more than it can discharge now; for a window that opens later (a day-ahead call)
  it counts what it can charge at its rated power before then, up to its maximum SoC, and its rated
  discharge power: the plan that commits to the event charges it;
* an interruptible load offers its nominal kW only if it may stay shed for the whole window
  (``max_shed_s`` >= window); one that must come back midway would break the commitment then.

:func:`offer_kw` is pure; :class:`ParkCapacity` feeds it from the latest cycle (a cycle observer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.config import BatterySpec, ControllerConfig
from controller.cycle import CycleReport
from controller.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class BatteryOffer:
    soc_pct: float
    soc_min_pct: float
    capacity_kwh: float
    max_discharge_kw: float
    eta_discharge: float = 1.0
    soc_max_pct: float = 100.0
    rated_charge_kw: float = 0.0  # nameplate: what it can charge before a later window
    rated_discharge_kw: float = 0.0
    eta_charge: float = 1.0


@dataclass(frozen=True, slots=True)
class LoadOffer:
    nominal_kw: float
    max_shed_s: float


@dataclass(frozen=True, slots=True)
class Capacity:
    battery_kw: float
    load_kw: float

    @property
    def total_kw(self) -> float:
        return self.battery_kw + self.load_kw


def battery_kw(b: BatteryOffer, duration_s: float, lead_s: float = 0.0) -> float:
    """Mean discharge the battery can hold for ``duration_s`` starting ``lead_s`` from now: usable energy
    at the start / hours, capped by power (now's for a window open now, the rated one for a later one)."""
    if duration_s <= 0:
        raise ValueError("the window must be longer than 0 s")
    soc = b.soc_pct
    if lead_s > 0 and b.capacity_kwh > 0:
        gain_pct = b.rated_charge_kw * lead_s / 3600.0 * b.eta_charge / b.capacity_kwh * 100.0
        soc = max(soc, min(b.soc_max_pct, soc + gain_pct))
    usable_kwh = max(soc - b.soc_min_pct, 0.0) / 100.0 * b.capacity_kwh * b.eta_discharge
    power = b.max_discharge_kw if lead_s <= 0 else max(b.max_discharge_kw, b.rated_discharge_kw)
    return min(usable_kwh / (duration_s / 3600.0), max(power, 0.0))


def load_kw(ld: LoadOffer, duration_s: float) -> float:
    """The load's nominal kW when it may stay shed the whole window, else nothing."""
    return ld.nominal_kw if ld.max_shed_s >= duration_s else 0.0


def offer_kw(duration_s: float, batteries: Sequence[BatteryOffer], loads: Sequence[LoadOffer],
             lead_s: float = 0.0) -> Capacity:  # fmt: skip
    return Capacity(
        battery_kw=sum(battery_kw(b, duration_s, lead_s) for b in batteries),
        load_kw=sum(load_kw(ld, duration_s) for ld in loads),
    )


class ParkCapacity:
    """``(start, end) -> kW`` from the latest cycle's battery readings and the configured loads.

    Before the first cycle (or with no battery reading) the batteries offer nothing: an ack must not
    promise what nobody has measured.
    """

    def __init__(self, config: ControllerConfig) -> None:
        self._limits = config.battery_limits()
        specs = config.planner.battery_specs if config.planner is not None else {}
        self._specs: Mapping[str, BatterySpec] = specs
        self._loads = [LoadOffer(ld.nominal_kw, ld.max_shed_s) for ld in config.loads]
        self._snapshot: Snapshot | None = None

    def on_cycle(self, report: CycleReport) -> None:
        self._snapshot = report.snapshot

    def __call__(self, start: datetime, end: datetime) -> float:
        return self.capacity(start, end).total_kw

    def capacity(self, start: datetime, end: datetime) -> Capacity:
        snap = self._snapshot
        batteries = []
        if snap is not None:
            for bid, r in snap.batteries.items():
                if r is None or bid not in self._limits:
                    continue
                lim, spec = self._limits[bid], self._specs.get(bid)
                batteries.append(BatteryOffer(
                    r.soc_pct, lim.soc_min_pct, r.capacity_kwh, r.max_discharge_kw,
                    spec.eta_discharge if spec else 1.0, lim.soc_max_pct,
                    spec.p_charge_max_kw if spec else 0.0, spec.p_discharge_max_kw if spec else 0.0,
                    spec.eta_charge if spec else 1.0,
                ))  # fmt: skip
        lead_s = (start - snap.ts).total_seconds() if snap is not None else 0.0
        return offer_kw((end - start).total_seconds(), batteries, self._loads, max(0.0, lead_s))
