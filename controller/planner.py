"""Re-planning on a rolling horizon, off the event loop, so the cycle never waits for the solver.

The planner wakes every ``replan_s``, at once when asked (a demand-response event, a large deviation
from the plan), builds the optimiser's inputs from the latest process image and a forecast, and solves
in a worker thread. On a simulated clock it holds time still while solving, so a replay is the same
whatever the machine. A failed solve keeps the previous plan while it still covers the present; the
optimiser's own fallback plans are flagged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from controller.config import ControllerConfig
from controller.cycle import CycleReport
from controller.forecast import Forecaster
from controller.mpc import ActivePlan, PlanHolder
from controller.planning import LoadHistory, ParkState, build_inputs, plan_start
from controller.snapshot import Snapshot
from optimizer.inputs import DrEvent
from optimizer.persistent import RollingOptimizer
from optimizer.plan import Plan
from parkctl.clock import Clock, ceil_to

log = logging.getLogger(__name__)

DrSource = Callable[[datetime, int, int], list[DrEvent]]  # (start, step_s, n_steps) -> events
PeakSource = Callable[[datetime], float]  # now -> this month's highest 15-min import so far


class PlanListener(Protocol):
    def on_plan(self, status: str, *, plan_ts: datetime | None = None, solve_s: float | None = None,
                fallback_active: bool = False) -> None: ...


class Planner:
    def __init__(
        self,
        config: ControllerConfig,
        forecaster: Forecaster,
        clock: Clock,
        holder: PlanHolder,
        *,
        listeners: Sequence[PlanListener] = (),
        on_new_plan: Sequence[Callable[[Plan], None]] = (),
        dr_source: DrSource | None = None,
        peak_source: PeakSource | None = None,
    ) -> None:
        if config.planner is None:
            raise ValueError("the planner needs a 'planner' section in the configuration")
        self.config, self.settings = config, config.planner
        self.forecaster, self.clock, self.holder = forecaster, clock, holder
        self.listeners, self.on_new_plan = list(listeners), list(on_new_plan)
        self.dr_source, self.peak_source = dr_source, peak_source
        self.optimizer = RollingOptimizer()
        self._wake = asyncio.Event()
        self._reasons: list[str] = []
        self._snapshot: Snapshot | None = None
        self._loads: dict[str, LoadHistory] = {}
        self._tz = ZoneInfo(config.site.timezone)
        self._off_plan_since: datetime | None = None
        self._peak_kw = 0.0
        self._first_requested = False
        self.solves = 0
        self.failures = 0
        self.last_status = "none"

    @property
    def load_history(self) -> dict[str, LoadHistory]:
        """Each load's sheds as the cycles so far have shown them (a copy)."""
        return dict(self._loads)

    def history_at(self, now: datetime) -> dict[str, LoadHistory]:
        """What a plan made at ``now`` is told: a plan at midnight runs before the day's first cycle,
        and the new day gives every load its sheds back."""
        today = now.astimezone(self._tz).date()
        return {lid: h.on(today) for lid, h in self._loads.items()}

    # -- triggers ----------------------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Re-plan as soon as possible (thread-safe only from the event loop's thread)."""
        self._reasons.append(reason)
        self._wake.set()

    def on_cycle(self, report: CycleReport) -> None:
        """Observer: keep the latest image, track sheds, and ask for a re-plan on a lasting deviation."""
        self._snapshot = report.snapshot
        self._track_loads(report)
        if not self._first_requested:
            self._first_requested = True
            self.request("first plan")
        plan, meter = self.holder.current, report.snapshot.meter
        step = plan.step_at(report.ts) if plan is not None else None
        if step is None or meter is None:
            self._off_plan_since = None
            return
        if meter.p_kw > 0:
            self._peak_kw = max(self._peak_kw, meter.p_kw)
        if abs(meter.p_kw - step.grid_kw) > self.settings.deviation_kw:
            self._off_plan_since = self._off_plan_since or report.ts
            if (report.ts - self._off_plan_since).total_seconds() >= self.settings.deviation_s:
                self._off_plan_since = None
                self.request("deviation")
        else:
            self._off_plan_since = None

    def _track_loads(self, report: CycleReport) -> None:
        """Follow sheds and restores as commanded; the daily count starts again at local midnight."""
        ts = report.ts
        today = ts.astimezone(self._tz).date()
        for lid, shed in report.setpoints.load_shed.items():
            hist = self._loads.get(lid, LoadHistory(day=today)).on(today)
            if shed and hist.shed_since is None:
                hist = replace(hist, shed_since=ts, sheds_today=hist.sheds_today + 1)
            elif not shed and hist.shed_since is not None:
                hist = replace(hist, shed_since=None, last_restore=ts)
            self._loads[lid] = hist

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        period = timedelta(seconds=self.settings.replan_s)
        next_at = ceil_to(self.clock.now(), period)
        while True:
            await self.clock.sleep_until(next_at, priority=40, wake=self._wake)
            self._wake.clear()
            reasons, self._reasons = self._reasons or ["periodic"], []
            await self.plan_now(", ".join(reasons))
            now = self.clock.now()
            while next_at <= now:
                next_at += period

    async def plan_now(self, reason: str) -> ActivePlan | None:
        """Solve now (in a worker thread) and install the result; None when nothing could be planned."""
        snap = self._snapshot
        if snap is None or any(r is None for r in snap.batteries.values()):
            log.info("re-plan (%s) skipped: no complete battery reading yet", reason)
            return None
        now = self.clock.now()
        s = self.settings
        start = plan_start(now, s.step_s)
        n = int(s.horizon_h * 3600 // s.step_s)
        started = time.perf_counter()
        try:  # a forecaster, a DR source or the solver that raises must not end the planner
            forecast = self.forecaster.forecast(now, start, n, s.step_s)
            peak = self.peak_source(now) if self.peak_source else self._peak_kw
            state = ParkState(ts=now, soc_pct={b: r.soc_pct for b, r in snap.batteries.items() if r is not None},
                              loads=self.history_at(now), month_peak_kw=peak)  # fmt: skip
            events = self.dr_source(start, s.step_s, n) if self.dr_source else []
            inputs = build_inputs(self.config, forecast, state, events)
            async with self.clock.hold():
                plan = await asyncio.to_thread(self.optimizer.solve, inputs)
        except Exception:
            self.failures += 1
            log.exception("re-plan (%s) failed; keeping the previous plan while it lasts", reason)
            self._notify("failed", None, time.perf_counter() - started, fallback=True)
            return None
        self.solves += 1
        active = ActivePlan(plan=plan, created_at=now)
        self.holder.set(active)
        self.last_status = plan.status
        if plan.fallback:
            log.warning("re-plan (%s): %s", reason, plan.message)
        self._notify(plan.status, now, plan.timings.total_s, fallback=plan.fallback)
        for callback in self.on_new_plan:
            try:
                callback(plan)
            except Exception:
                log.exception("plan callback failed")
        return active

    def _notify(self, status: str, plan_ts: datetime | None, solve_s: float, fallback: bool) -> None:
        for listener in self.listeners:
            try:
                listener.on_plan(status, plan_ts=plan_ts, solve_s=solve_s, fallback_active=fallback)
            except Exception:
                log.exception("plan listener %r failed", listener)
