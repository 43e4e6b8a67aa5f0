"""Rule-based self-consumption: the dispatch every park gets without an optimiser.

Charge from PV surplus, discharge to cover load, cap PV so the zero-export rule holds, shed
interruptible load before the import cap is reached. Pure functions of the snapshot and the previous
setpoints: no I/O, no clock, testable cycle by cycle.

How the PV cap can rise again: a capped fleet hides how much sun there is. While PV is capped and a
battery can still charge, the battery is asked to charge ``pv_probe_pct`` more than the surplus it
sees and the cap rises by the same amount; if the sun is there, the next cycle sees a larger surplus.
The battery ramps faster than the inverters, so probing imports briefly and never exports.

A capped fleet also means the battery does not discharge: PV comes first, unless the import would
otherwise pass the cap in force (the hard limit comes before green). And because the PV cap
is set ``export_margin_kw`` inside the export limit while the battery steers the grid to
``target_import_kw``, the target must exceed the margin, or the cap would sit below what PV already
makes (checked by :class:`RuleSettings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.setpoints import Setpoints
from controller.settings import BatteryLimits, GridLimits, RuleSettings
from controller.snapshot import Snapshot
from drivers.capabilities import BatteryReading, PvReading

CAP_TOLERANCE = 0.005  # share of rating: output this close to the cap counts as held back


@dataclass(frozen=True, slots=True)
class LoadReturn:
    """How an interruptible load comes back: by itself after ``max_shed_s``, drawing its rebound."""

    max_shed_s: float
    rebound_factor: float  # energy drawn back, share of what the shed saved
    rebound_s: float  # over this long, decaying linearly from twice its mean

    def first_kw(self, nominal_kw: float, shed_s: float) -> float:
        """Draw in the first second back: nominal plus the rebound's peak (worst case for the cap)."""
        shed_s = min(max(shed_s, 0.0), self.max_shed_s)
        return nominal_kw * (1.0 + 2.0 * self.rebound_factor * shed_s / self.rebound_s)


@dataclass(frozen=True, slots=True)
class SiteModel:
    """What decide needs to know about the site beyond the snapshot."""

    grid: GridLimits
    batteries: Mapping[str, BatteryLimits]
    pv_rated_kw: Mapping[str, float]
    load_nominal_kw: Mapping[str, float]
    rules: RuleSettings = field(default_factory=RuleSettings)
    cycle_s: float = 1.0  # how long a setpoint stands before the next cycle can correct it
    load_return: Mapping[str, LoadReturn] = field(default_factory=dict)

    def drop_share(self, pct_per_min: float) -> float:
        """Share of a quantity falling at ``pct_per_min`` that is gone before the next cycle."""
        return min(1.0, pct_per_min / 100.0 * self.cycle_s / 60.0)


def sustained_charge_kw(reading: BatteryReading | None, p_kw: float, limits: BatteryLimits, horizon_s: float) -> float:
    """The charge a battery told ``p_kw`` (< 0) will still take at the end of ``horizon_s``.

    A battery near full tapers its charge toward its maximum SoC while it fills; PV allowed against the
    whole setpoint would then be exported before the next cycle sees it. The taper is taken as linear
    from what the device says it takes now down to nothing at the maximum SoC (the common shape; a
    battery far from full loses nothing measurable). Discharge and idle setpoints are returned as they are.
    """
    if p_kw >= 0 or reading is None or reading.capacity_kwh <= 0:
        return p_kw
    gap_pct = limits.soc_max_pct - reading.soc_pct
    if gap_pct <= 0:
        return 0.0
    rise_pct = -p_kw * horizon_s / 3600.0 / reading.capacity_kwh * 100.0
    able_kw = max(0.0, reading.max_charge_kw) * max(0.0, 1.0 - rise_pct / gap_pct)
    return max(p_kw, -able_kw)


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
    # A load told to stay shed that reports running has restored itself (its maximum shed time) or
    # never went: believe the device, or the dispatch would count on a drop that is not coming.
    shed = {lid: (previous.load_shed.get(lid, False) and not _running(snap, lid)) or wanted[lid]
            for lid in site.load_nominal_kw}  # fmt: skip
    for lid in shed:
        reading = snap.loads.get(lid)
        if wanted[lid] and not previous.load_shed.get(lid, False) and reading is not None and reading.running:
            projected_import_kw -= reading.p_kw
    ceiling = cap_ceiling_kw(site, targets)
    for lid in sorted(shed, key=lambda i: -site.load_nominal_kw[i]):
        reading = snap.loads.get(lid)
        if projected_import_kw <= ceiling:
            break
        if not shed[lid] and reading is not None and reading.running:
            shed[lid] = True
            projected_import_kw -= reading.p_kw
    # Restores one load a cycle, smallest first, and only when its first draw (with the rebound of its
    # shed) fits: loads brought back together draw their rebounds together.
    for lid in sorted(shed, key=lambda i: site.load_nominal_kw[i]):
        back_kw = first_draw_kw(snap, site, lid)
        if shed[lid] and not wanted[lid] and projected_import_kw + back_kw <= ceiling - s.restore_headroom_kw:
            shed[lid] = False
            projected_import_kw += back_kw
            break
    return shed, projected_import_kw


def first_draw_kw(snap: Snapshot, site: SiteModel, lid: str) -> float:
    """What a shed load draws the moment it is back: nominal, plus its rebound peak when that is known."""
    nominal = site.load_nominal_kw[lid]
    ret, since = site.load_return.get(lid), snap.shed_since.get(lid)
    if ret is None:
        return nominal
    return ret.first_kw(nominal, (snap.ts - since).total_seconds() if since is not None else ret.max_shed_s)


def cap_ceiling_kw(site: SiteModel, targets: Targets) -> float:
    """The import the guards steer under: the cap in force less its margin, but never so low that holding
    it would export (a cap of 0, from a demand-response event or a broken plan, must not push power out:
    the export limit is the grid's hard rule, a demand-response cap a commitment)."""
    floor = -site.grid.export_cap_kw + site.rules.target_import_kw
    return max(targets.import_cap_kw - site.rules.import_margin_kw, floor)


def _running(snap: Snapshot, lid: str) -> bool:
    reading = snap.loads.get(lid)
    return reading is not None and reading.running


def dispatch(snap: Snapshot, previous: Setpoints, site: SiteModel, targets: Targets) -> Setpoints:
    """One cycle of real-time dispatch toward ``targets`` under the guards (see module docstring)."""
    load_kw = snap.site_load_kw()
    if load_kw is None:
        return blind_setpoints(site, previous)
    s = site.rules
    capped = _fleet_is_capped(snap, previous.pv_limit_kw, site.pv_rated_kw)
    ceiling_kw = cap_ceiling_kw(site, targets)
    pv_after_kw = snap.pv_kw * (1.0 - site.drop_share(s.pv_drop_pct_per_min))  # after a cloud in this cycle

    def battery_for(site_load_kw: float) -> dict[str, float]:
        want_kw = site_load_kw - snap.pv_kw - targets.grid_kw  # + discharge
        if capped:
            # PV is being held back: the battery must not discharge in its place (that would lower the
            # cap further, cycle after cycle); it charges a little more so the cap can rise. But never
            # at the price of the import cap: what keeps the import under it is discharged regardless.
            # A battery that was discharging steps down by the probe instead: its own discharge is what
            # held PV at the cap, and dropping it at once would swing the import by all of it.
            # What the cap needs is held with room for a cloud, as when charging below.
            over_cap_kw = site_load_kw - pv_after_kw - ceiling_kw
            probe_kw = s.pv_probe_pct / 100 * sum(site.pv_rated_kw.values())
            prev_kw = previous.battery_total_kw
            top_kw = prev_kw - probe_kw if prev_kw > probe_kw else min(want_kw, 0.0) - probe_kw
            want_kw = max(min(want_kw, top_kw), over_cap_kw)
        if want_kw < 0:  # charging is discretionary: it leaves the cap room for a cloud before the next cycle
            want_kw = max(want_kw, min(0.0, site_load_kw - pv_after_kw - ceiling_kw))
        return split_battery_power(want_kw, snap, site.batteries)

    battery = battery_for(load_kw)
    shed, _ = plan_sheds(load_kw - snap.pv_kw - sum(battery.values()), snap, site, previous, targets)
    # Loads told to go this cycle drop within it, while the battery holds this cycle's setpoint: the
    # discharge must leave no export once they are gone. Only the excess over that room is taken back
    # (a shed the device refuses then costs little), and a load told earlier that still runs is not
    # coming down at all.
    shed_kw = sum(r.p_kw for lid, r in snap.loads.items()
                  if r is not None and r.running and shed.get(lid) and not previous.load_shed.get(lid))  # fmt: skip
    allowance_kw = export_allowance_kw(site, load_kw - shed_kw)
    room_kw = allowance_kw - snap.pv_kw
    if shed_kw and sum(battery.values()) > room_kw:
        battery = split_battery_power(room_kw, snap, site.batteries)
    # Loads that come back before the next cycle (restored now, or ending a shed by themselves at their
    # maximum shed time) draw at once, with their rebound: discharge ahead for them so the import stays
    # under the cap, but no further than leaves no export should they stay off.
    back_kw = returning_kw(snap, previous, site, shed)
    need_kw = load_kw + back_kw - snap.pv_kw - ceiling_kw
    if back_kw and need_kw > sum(battery.values()):
        battery = split_battery_power(min(need_kw, max(sum(battery.values()), room_kw)), snap, site.batteries)
    # PV is allowed against what the batteries will still absorb when the cycle ends, not their setpoints
    absorbed_kw = sum(sustained_charge_kw(snap.batteries.get(b), p, site.batteries[b], site.cycle_s)
                      for b, p in battery.items() if b in site.batteries)  # fmt: skip
    allowed_pv_kw = allowance_kw - absorbed_kw
    caps = split_pv_cap(allowed_pv_kw, snap.pv, site.pv_rated_kw, previous.pv_limit_kw)
    return Setpoints(pv_limit_kw=caps, battery_p_kw=battery, load_shed=shed, reason=targets.reason)


def export_allowance_kw(site: SiteModel, load_kw: float) -> float:
    """What PV and discharge together may supply before the export cap, less its margin, is at risk:
    the load as it may be by the end of the cycle (falling at ``load_drop_pct_per_min``)."""
    s = site.rules
    return load_kw * (1.0 - site.drop_share(s.load_drop_pct_per_min)) + site.grid.export_cap_kw - s.export_margin_kw


def returning_kw(snap: Snapshot, previous: Setpoints, site: SiteModel, shed: Mapping[str, bool]) -> float:
    """First-second draw of the shed loads that will run before the next cycle: those restored now and
    those whose maximum shed time ends by then (their device restores them whatever we say)."""
    horizon = snap.ts + timedelta(seconds=site.cycle_s)
    total = 0.0
    for lid, was_shed in previous.load_shed.items():
        if not was_shed or lid not in site.load_nominal_kw or _running(snap, lid):
            continue
        since, ret = snap.shed_since.get(lid), site.load_return.get(lid)
        expires = since is not None and ret is not None and since + timedelta(seconds=ret.max_shed_s) <= horizon
        if shed.get(lid, False) and not expires:
            continue
        total += first_draw_kw(snap, site, lid)
    return total


CapFn = Callable[[datetime], float | None]  # a demand-response import cap in force at ts, or None


def import_cap_now(site: SiteModel, ts: datetime, cap_fn: CapFn | None) -> float:
    """The connection's import cap, or a tighter demand-response cap in force at ``ts``."""
    dr_cap = cap_fn(ts) if cap_fn is not None else None
    return site.grid.import_cap_kw if dr_cap is None else min(site.grid.import_cap_kw, dr_cap)


def decide_rules(snap: Snapshot, previous: Setpoints, site: SiteModel, cap_fn: CapFn | None = None) -> Setpoints:
    """Rule-based self-consumption: steer the grid to a small import, PV first."""
    targets = Targets(grid_kw=site.rules.target_import_kw, import_cap_kw=import_cap_now(site, snap.ts, cap_fn))
    return dispatch(snap, previous, site, targets)
