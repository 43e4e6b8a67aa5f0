"""Rule-based self-consumption: the dispatch every park gets without an optimiser.

Charge from PV surplus, discharge to cover load, cap PV so the zero-export rule holds, shed
interruptible load before the import cap is reached. Pure functions of the snapshot and the previous
setpoints: no I/O, no clock, testable cycle by cycle.

How the PV cap can rise again: a capped fleet hides how much sun there is. While PV is capped and a
battery can still charge, the battery is asked to charge ``pv_probe_pct`` more than the surplus it
sees and the cap rises by the same amount; if the sun is there, the next cycle sees a larger surplus.
The battery ramps faster than the inverters, so probing imports briefly and never exports.

A capped fleet also means the battery does not discharge: PV comes first. And because the PV cap
is set ``export_margin_kw`` inside the export limit while the battery steers the grid to
``target_import_kw``, the target must exceed the margin, or the cap would sit below what PV already
makes (checked by :class:`RuleSettings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.setpoints import Setpoints
from controller.settings import BatteryLimits, GridLimits, RuleSettings
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, PvReading

CAP_TOLERANCE = 0.005  # share of rating: output this close to the cap counts as held back


@dataclass(frozen=True, slots=True)
class SiteModel:
    """What decide needs to know about the site beyond the snapshot."""

    grid: GridLimits
    batteries: Mapping[str, BatteryLimits]
    pv_rated_kw: Mapping[str, float]
    load_nominal_kw: Mapping[str, float]
    rules: RuleSettings = field(default_factory=RuleSettings)


def battery_headroom(
    reading: BatteryReading | None, limits: BatteryLimits
) -> tuple[float, float]:
    """(charge_kw, discharge_kw) the battery may take or give now within the controller's SoC window."""
    if reading is None:
        return 0.0, 0.0
    charge = max(0.0, reading.max_charge_kw) if reading.soc_pct < limits.soc_max_pct else 0.0
    discharge = max(0.0, reading.max_discharge_kw) if reading.soc_pct > limits.soc_min_pct else 0.0
    return charge, discharge


def split_battery_power(
    want_kw: float, snap: Snapshot, limits: Mapping[str, BatteryLimits]
) -> dict[str, float]:
    """Share ``want_kw`` (+ discharge) among batteries in proportion to what each can do now."""
    heads = {bid: battery_headroom(snap.batteries.get(bid), lim) for bid, lim in limits.items()}
    index = 1 if want_kw > 0 else 0
    total = sum(h[index] for h in heads.values())
    if total <= 0 or want_kw == 0:
        return dict.fromkeys(limits, 0.0)
    share = min(abs(want_kw), total) / total
    sign = 1.0 if want_kw > 0 else -1.0
    return {bid: sign * h[index] * share for bid, h in heads.items()}


def _at_cap(reading: PvReading | None, cap: float | None, rated: float) -> bool:
    """True when a plant produces at its cap: how much more sun there is cannot be seen."""
    return cap is not None and reading is not None and reading.p_kw >= cap - CAP_TOLERANCE * rated


def split_pv_cap(
    allowed_kw: float,
    pv: Mapping[str, PvReading | None],
    rated_kw: Mapping[str, float],
    previous: Mapping[str, float | None],
) -> dict[str, float | None]:
    """Caps per plant that add up to ``allowed_kw`` (or lift every cap when it is not binding).

    Weighted max-min water-filling: a plant producing below its cap wants what it makes; a plant at
    its cap (or unread) may want its whole rating. Each plant gets at most its want, the allowance is
    shared by rating among the rest, and what is left over is spread by rating as headroom, so the
    caps use the whole allowance and a plant that is not held back stays visibly below its cap.
    """
    total_rated = sum(rated_kw.values())
    if allowed_kw >= total_rated:
        return dict.fromkeys(rated_kw, None)
    remaining = max(0.0, allowed_kw)
    want: dict[str, float] = {}
    for pid, rated in rated_kw.items():
        reading, prev = pv.get(pid), previous.get(pid)
        if reading is None or _at_cap(reading, prev, rated):
            want[pid] = rated
        else:
            want[pid] = min(rated, reading.p_kw)
    caps: dict[str, float] = {}
    pending_rated = total_rated
    for pid in sorted(rated_kw, key=lambda p: want[p] / rated_kw[p]):
        fair = remaining * rated_kw[pid] / pending_rated
        caps[pid] = min(want[pid], fair)
        remaining -= caps[pid]
        pending_rated -= rated_kw[pid]
    if remaining > 1e-9:  # every want met: hand out the rest as extra headroom, by rating
        for pid, rated in rated_kw.items():
            caps[pid] = min(rated, caps[pid] + remaining * rated / total_rated)
    return {pid: caps[pid] for pid in rated_kw}


def _fleet_is_capped(
    snap: Snapshot, previous: Mapping[str, float | None], rated: Mapping[str, float]
) -> bool:
    return any(_at_cap(snap.pv.get(pid), cap, rated[pid]) for pid, cap in previous.items() if pid in rated)


def blind_setpoints(site: SiteModel, previous: Setpoints) -> Setpoints:
    """Safe state while the meter cannot be read: batteries idle, PV capped, loads left as they are."""
    caps = split_pv_cap(site.rules.blind_pv_limit_kw, {}, site.pv_rated_kw, {})
    return Setpoints(
        pv_limit_kw=caps,
        battery_p_kw=dict.fromkeys(site.batteries, 0.0),
        load_shed=dict(previous.load_shed),
        reason="meter stale: safe state",
    )


@dataclass(frozen=True, slots=True)
class Targets:
    """What the layer above (rules or a plan) asks the real-time dispatch for in this cycle."""

    grid_kw: float  # import the battery steers toward
    import_cap_kw: float  # hard import cap in force now (the connection's, or a demand-response cap)
    shed: Mapping[str, bool] = field(default_factory=dict)  # loads the plan wants shed now
    reason: str = "rules"


def plan_sheds(
    projected_import_kw: float, snap: Snapshot, site: SiteModel, previous: Setpoints, targets: Targets
) -> tuple[dict[str, bool], float]:
    """Shed loads the plan asks for, and more (largest first) when import nears the cap; restore loads
    the plan no longer needs once there is headroom. Returns the shed map and the projected import.
    """
    s = site.rules
    wanted = {lid: targets.shed.get(lid, False) for lid in site.load_nominal_kw}
    shed = {lid: previous.load_shed.get(lid, False) or wanted[lid] for lid in site.load_nominal_kw}
    for lid in shed:
        reading = snap.loads.get(lid)
        if wanted[lid] and not previous.load_shed.get(lid, False) and reading is not None and reading.running:
            projected_import_kw -= reading.p_kw
    ceiling = targets.import_cap_kw - s.import_margin_kw
    for lid in sorted(shed, key=lambda i: -site.load_nominal_kw[i]):
        reading = snap.loads.get(lid)
        if projected_import_kw <= ceiling:
            break
        if not shed[lid] and reading is not None and reading.running:
            shed[lid] = True
            projected_import_kw -= reading.p_kw
    for lid in sorted(shed, key=lambda i: site.load_nominal_kw[i]):
        nominal = site.load_nominal_kw[lid]
        if shed[lid] and not wanted[lid] and projected_import_kw + nominal <= ceiling - s.restore_headroom_kw:
            shed[lid] = False
            projected_import_kw += nominal
    return shed, projected_import_kw


def dispatch(snap: Snapshot, previous: Setpoints, site: SiteModel, targets: Targets) -> Setpoints:
    """One cycle of real-time dispatch toward ``targets`` under the guards (see module docstring)."""
    load_kw = snap.site_load_kw()
    if load_kw is None:
        return blind_setpoints(site, previous)
    s = site.rules
    capped = _fleet_is_capped(snap, previous.pv_limit_kw, site.pv_rated_kw)

    def battery_for(site_load_kw: float) -> dict[str, float]:
        want_kw = site_load_kw - snap.pv_kw - targets.grid_kw  # + discharge
        if capped:
            # PV is being held back: the battery must not discharge in its place (that would lower the
            # cap further, cycle after cycle); it charges a little more so the cap can rise.
            want_kw = min(want_kw, 0.0) - s.pv_probe_pct / 100 * sum(site.pv_rated_kw.values())
        return split_battery_power(want_kw, snap, site.batteries)

    battery = battery_for(load_kw)
    shed, _ = plan_sheds(load_kw - snap.pv_kw - sum(battery.values()), snap, site, previous, targets)
    shed_kw = sum(r.p_kw for lid, r in snap.loads.items() if r is not None and shed.get(lid) and r.running)
    if shed_kw:  # the load about to drop must not leave the battery pushing power out to the grid
        battery = battery_for(load_kw - shed_kw)
    battery_kw = sum(battery.values())
    allowed_pv_kw = (load_kw - shed_kw) - battery_kw + site.grid.export_cap_kw - s.export_margin_kw
    caps = split_pv_cap(allowed_pv_kw, snap.pv, site.pv_rated_kw, previous.pv_limit_kw)
    return Setpoints(pv_limit_kw=caps, battery_p_kw=battery, load_shed=shed, reason=targets.reason)


def decide_rules(snap: Snapshot, previous: Setpoints, site: SiteModel) -> Setpoints:
    """Rule-based self-consumption: steer the grid to a small import, PV first."""
    targets = Targets(grid_kw=site.rules.target_import_kw, import_cap_kw=site.grid.import_cap_kw)
    return dispatch(snap, previous, site, targets)
