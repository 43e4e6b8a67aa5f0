"""Following a plan in real time: the plan sets the targets, the same dispatch and guards apply.

Each cycle looks up the plan step it is in and steers the grid to the plan's import for that step
(the battery absorbs the forecast error first; PV caps and load shedding follow, exactly as under the
rules). Planned sheds are passed on; the import cap in force is the connection's or, inside a
demand-response window, the committed cap. With no usable plan the cycle runs the rules and says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.rules import CapFn, SiteModel, Targets, decide_rules, dispatch, import_cap_now
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from optimizer.plan import Plan


@dataclass(frozen=True, slots=True)
class PlanStep:
    index: int
    grid_kw: float  # planned import (+) / export (-), step mean
    battery_kw: dict[str, float]
    shed: dict[str, bool]
    import_cap_kw: float


@dataclass(frozen=True)
class ActivePlan:
    """A solved plan as the cycle uses it."""

    plan: Plan
    created_at: datetime

    @property
    def start(self) -> datetime:
        return self.plan.inputs.start

    @property
    def step_s(self) -> int:
        return self.plan.inputs.step_s

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.step_s * self.plan.inputs.n_steps)

    def step_at(self, ts: datetime) -> PlanStep | None:
        i = int((ts - self.start).total_seconds() // self.step_s)
        if not 0 <= i < self.plan.inputs.n_steps:
            return None
        p = self.plan
        caps = [p.inputs.import_cap_kw[i]]
        caps += [e.cap_kw for e in p.inputs.dr_events if e.kind == "import_cap" and e.first_step <= i < e.end_step]
        return PlanStep(
            index=i,
            grid_kw=p.grid_import_kw[i] - p.grid_export_kw[i],
            battery_kw={b.id: b.p_kw[i] for b in p.batteries},
            shed={ld.id: not ld.on[i] for ld in p.loads if ld.kind == "interruptible"},
            import_cap_kw=min(caps),
        )


class PlanHolder:
    """The current plan, swapped in by the planner thread and read by the cycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: ActivePlan | None = None

    @property
    def current(self) -> ActivePlan | None:
        with self._lock:
            return self._plan

    def set(self, plan: ActivePlan | None) -> None:
        with self._lock:
            self._plan = plan


def plan_targets(step: PlanStep, site: SiteModel) -> Targets:
    """Targets for one cycle inside a plan step, kept inside the guards' margins."""
    s = site.rules
    floor = -site.grid.export_cap_kw + s.target_import_kw
    ceiling = min(step.import_cap_kw, site.grid.import_cap_kw) - s.import_margin_kw
    grid = min(max(step.grid_kw, floor), max(floor, ceiling))
    return Targets(grid_kw=grid, import_cap_kw=min(step.import_cap_kw, site.grid.import_cap_kw),
                   shed=step.shed, reason=f"plan step {step.index}")  # fmt: skip


def decide_mpc(
    snap: Snapshot, previous: Setpoints, site: SiteModel, plan: ActivePlan | None, cap_fn: CapFn | None = None
) -> Setpoints:
    """Follow the plan step; ``cap_fn`` (the DR cap in force) holds even when the plan does not know it."""
    step = plan.step_at(snap.ts) if plan is not None else None
    if step is None:
        out = decide_rules(snap, previous, site, cap_fn)
        return Setpoints(out.pv_limit_kw, out.battery_p_kw, out.load_shed, reason="no valid plan: rules")
    if cap_fn is not None:
        step = replace(step, import_cap_kw=min(step.import_cap_kw, import_cap_now(site, snap.ts, cap_fn)))
    return dispatch(snap, previous, site, plan_targets(step, site))
