"""Replay a scenario for several days and strategies in process, to see what the optimiser is worth.

Each strategy runs the production decision code (:class:`controller.cycle.Runtime` with
:func:`controller.build.make_decider`, and for ``mpc``/``oracle`` the production :class:`Planner`)
against a :class:`~sim.park.Park` through :mod:`sim.inprocess` capability objects on an
as-fast-as-possible :class:`SimClock`. No sockets: a day takes seconds instead of minutes, and the
planner holds the clock while it solves, so the figures do not depend on the machine.

Strategies:

- ``none``: no control. Batteries idle, nothing shed, PV capped only as far as the export rule forces.
- ``rules``: rule-based self-consumption (:func:`controller.rules.decide_rules`).
- ``mpc``: the rolling-horizon planner on the seeded, lead-dependent :class:`SimForecaster`.
- ``oracle``: the same planner with a perfect forecast (every forecast sigma 0), run through the same
  real-time layer: what mpc would do if its forecasts were right.

One park per strategy runs the whole replay, so batteries carry their charge across midnight. Per-day
KPIs difference the park's cumulative counters at each day boundary (every 24 h from the start);
the running extremes (15-minute peak, instant peak, SoC range) are taken from the day's 60-s rows.
``operating_cost_cny`` is energy cost + shed cost + battery degradation; ``bill_cny`` adds the run's
share of the month (days / days in the month) of the demand charge on its highest 15-minute import:
what the park pays for those days if the month goes on like them. ``savings_captured`` =
(bill_none - bill_mpc) / (bill_none - bill_oracle), the same for grid import (``grey_import_captured``);
None when a strategy is missing or the denominator is ~0.

``bound_bill_cny`` is the perfect-foresight bound of :mod:`sim.bound`: a linear relaxation of the park
over the realised days that no run keeping the grid limits can beat, whatever its controller. The
``oracle`` is a strategy that really runs (so it has time series and plots) and is cheaper than mpc
when forecasts are what separates them; the bound says how far any strategy is from the best possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.build import make_decider, month_peak_source
from controller.config import ControllerConfig, TelemetryConfig
from controller.cycle import Decide, Observer, Runtime
from controller.devices import DeviceSet
from controller.mpc import PlanHolder
from controller.planner import Planner
from controller.rules import SiteModel, blind_setpoints, export_allowance_kw, split_pv_cap
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from parkctl.clock import SimClock
from sim.bound import bill, bound_bill, month_share
from sim.broker import BrokerUrl
from sim.day import controller_config_for, write_results
from sim.forecast import SimForecaster
from sim.inprocess import park_devices
from sim.kpi import DEMAND_WINDOW_S
from sim.modbus_server import Endpoint, ParkEndpoints
from sim.park import Park
from sim.progress import HoursObserver, ProgressFactory, Tick
from sim.replay_cli import STRATEGIES
from sim.report import require_plotting, write_report
from sim.scenario import Scenario

log = logging.getLogger(__name__)
DAY = timedelta(days=1)
# Counters that add up over time; everything else in park.kpis() is a ratio or a running extreme.
ADDITIVE = (
    "hours", "pv_available_kwh", "pv_generated_kwh", "load_kwh", "grid_import_kwh", "grid_export_kwh",
    "battery_charge_kwh", "battery_discharge_kwh", "energy_cost_cny", "co2_kg", "export_limit_violation_s",
    "import_limit_violation_s", "energy_balance_error_kwh", "load_shed_kwh", "shed_cost_cny",
    "battery_degradation_cny",
)  # fmt: skip
_UNUSED_ENDPOINT = ("127.0.0.1", 9)  # the config wants endpoints; nothing connects to them


# -- configuration and decide -----------------------------------------------------------------------
def replay_config(scenario: Scenario, cycle_s: float, strategy: str) -> ControllerConfig:
    """Exactly the configuration of a simulated day (:func:`sim.day.controller_config_for`), no telemetry."""
    kinds = [(p.id, "pv") for p in scenario.pv] + [(b.id, "storage") for b in scenario.batteries]
    host, port = _UNUSED_ENDPOINT
    devices = {i: Endpoint(host, port, 1, kind) for i, kind in [*kinds, ("meter", "meter")]}
    config = controller_config_for(scenario, ParkEndpoints(devices=devices, servers={}), BrokerUrl(host, port),
                                   cycle_s, "mpc" if strategy in ("mpc", "oracle") else "rules")  # fmt: skip
    return config.model_copy(update={"telemetry": TelemetryConfig(enabled=False)})


def perfect_foresight(scenario: Scenario) -> Scenario:
    """The scenario with a forecaster that makes no error (what ``parkctl optimize --oracle`` plans on)."""
    zero = {"pv_sigma_now": 0.0, "pv_sigma_day_ahead": 0.0, "load_sigma_now": 0.0, "load_sigma_day_ahead": 0.0}
    return scenario.model_copy(update={"forecast_error": scenario.forecast_error.model_copy(update=zero)})


def decide_none(site: SiteModel) -> Decide:
    """No control: batteries idle, no sheds, PV capped only where the export rule forces it."""
    def none(snap: Snapshot, previous: Setpoints) -> Setpoints:
        load_kw = snap.site_load_kw()
        if load_kw is None:
            return blind_setpoints(site, previous)
        # the same export guard as the controller's: margin, and room for the load to fall within the cycle
        caps = split_pv_cap(export_allowance_kw(site, load_kw), snap.pv, site.pv_rated_kw, previous.pv_limit_kw)
        return Setpoints(pv_limit_kw=caps, battery_p_kw=dict.fromkeys(site.batteries, 0.0),
                         load_shed=dict.fromkeys(site.load_nominal_kw, False), reason="no control")  # fmt: skip
    return none


# -- one strategy ------------------------------------------------------------------------------------
@dataclass
class PlanStats:
    """Planner listener: what each re-plan cost and how it ended."""

    solve_s: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    fallbacks: int = 0

    def on_plan(self, status: str, *, plan_ts: datetime | None = None, solve_s: float | None = None,
                fallback_active: bool = False) -> None:  # fmt: skip
        self.statuses.append(status)
        self.solve_s.append(solve_s or 0.0)
        self.fallbacks += fallback_active


@dataclass
class StrategyRun:
    strategy: str
    total: dict[str, float]
    snapshots: list[dict[str, float]]  # park.kpis() at each day boundary inside the run
    rows: list[dict[str, object]]
    cycles: int
    decide_errors: int
    plans: PlanStats
    wall_s: float


async def _snapshots(clock: SimClock, park: Park, at: Iterable[datetime], out: list[dict[str, float]]) -> None:
    for t in at:
        await clock.sleep_until(t, priority=5)  # before the cycle of that instant (50)
        park.advance_to(t)
        out.append(park.kpis())


async def run_strategy(
    scenario: Scenario, strategy: str, hours: float, cycle_s: float = 60.0, progress: Tick | None = None
) -> StrategyRun:
    """Run one strategy for ``hours`` from the scenario start, wired like :func:`controller.build.build_controller`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    started = time.perf_counter()
    start = scenario.local_start
    end = scenario.end_after(hours)
    clock = SimClock(start, speed=None, paused=True)
    park = Park(scenario, clock)
    config = replay_config(scenario, cycle_s, strategy)
    devices = DeviceSet.discover(park_devices(park, clock))
    store = Store.open(config.storage.path, clock, StoreSettings(cycle_every=config.storage.cycle_every))
    stats = PlanStats()
    plans = PlanHolder() if config.strategy == "mpc" else None
    planner = None
    if plans is not None:
        forecaster = SimForecaster(perfect_foresight(scenario) if strategy == "oracle" else scenario)
        planner = Planner(config, forecaster, clock, plans, listeners=[stats], peak_source=month_peak_source(store))
    decide = decide_none(config.site_model()) if strategy == "none" else make_decider(config, plans)
    observers: list[Observer] = [store, *([planner] if planner else [])]
    if progress is not None:  # an observer, not a task: the bar cannot change the clock's schedule
        observers.append(HoursObserver(start, progress))
    runtime = Runtime(devices, decide, clock, config.cycle, observers)
    snaps: list[dict[str, float]] = []
    boundaries = [start + k * DAY for k in range(1, math.ceil(hours / 24)) if start + k * DAY < end]
    jobs = [runtime.run(until=end), _snapshots(clock, park, boundaries, snaps)]
    if planner is not None:
        jobs.append(planner.run())
    tasks = [asyncio.create_task(job) for job in jobs]
    for task in tasks:
        clock.adopt(task)
    clock.resume()
    try:
        await clock.sleep_until(end, priority=1_000)
    finally:
        runtime.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()
    park.advance_to(end)
    return StrategyRun(strategy, park.kpis(), snaps, park.timeseries(), runtime.stats.cycles,
                       runtime.stats.decide_errors, stats, time.perf_counter() - started)  # fmt: skip


# -- KPIs --------------------------------------------------------------------------------------------
def operating_cost(k: dict[str, float]) -> float:
    return k["energy_cost_cny"] + k["shed_cost_cny"] + k["battery_degradation_cny"]


def _extremes(rows: Sequence[dict[str, object]], battery_ids: Sequence[str]) -> dict[str, float]:
    """15-min peak import, instant (1-min) peak and SoC range of a day's 60-s rows."""
    windows: dict[str, float] = {}
    for r in rows:
        ts = datetime.fromisoformat(str(r["ts"]))
        key = ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0).isoformat()
        windows[key] = windows.get(key, 0.0) + max(0.0, float(r["grid_kw"])) * 60.0  # type: ignore[arg-type]
    socs = [float(r[f"bess_{b}_soc_pct"]) for r in rows for b in battery_ids]  # type: ignore[arg-type]
    return {
        "peak_import_kw": max(windows.values(), default=0.0) / DEMAND_WINDOW_S,
        "peak_import_instant_kw": max((max(0.0, float(r["grid_kw"])) for r in rows), default=0.0),  # type: ignore[arg-type]
        "soc_min_pct": min(socs, default=0.0),
        "soc_max_pct": max(socs, default=0.0),
    }


def derived(k: dict[str, float], green_kwh: float, scenario: Scenario) -> dict[str, float]:
    """Ratios and costs recomputed from a (possibly differenced) set of counters."""
    pv_av, load = k["pv_available_kwh"], k["load_kwh"]
    out = dict(k)
    out["pv_curtailed_kwh"] = max(0.0, pv_av - k["pv_generated_kwh"])
    out["green_utilization"] = green_kwh / pv_av if pv_av > 0 else 0.0
    out["self_sufficiency"] = 1.0 - k["grid_import_kwh"] / load if load > 0 else 0.0
    out["demand_charge_cny"] = k["peak_import_kw"] * scenario.tariff.demand_charge_cny_per_kw_month
    out["operating_cost_cny"] = operating_cost(k)
    out["bill_cny"] = bill(out, month_share(scenario, k["hours"]))
    return out


def per_day(run: StrategyRun, scenario: Scenario) -> list[dict[str, float]]:
    """KPIs of each day of the run (the last one may be partial)."""
    marks = [*run.snapshots, run.total]
    start, bats = scenario.local_start, [b.id for b in scenario.batteries]
    by_day: dict[int, list[dict[str, object]]] = {}
    for r in run.rows:
        day = int((datetime.fromisoformat(str(r["ts"])) - start) // DAY)
        by_day.setdefault(day, []).append(r)
    days, prev = [], None
    for i, cur in enumerate(marks):
        k = {key: cur[key] - (prev[key] if prev else 0.0) for key in ADDITIVE}
        green = cur["green_utilization"] * cur["pv_available_kwh"]
        green -= prev["green_utilization"] * prev["pv_available_kwh"] if prev else 0.0
        k.update(_extremes(by_day.get(i, []), bats))
        days.append(derived(k, green, scenario))
        prev = cur
    return days


def captured(results: dict[str, Any], key: str) -> float | None:
    """(none - mpc) / (none - oracle) of a total KPI; None when undefined."""
    try:
        none, mpc, oracle = (results[s]["total"][key] for s in ("none", "mpc", "oracle"))
    except KeyError:
        return None
    gap = none - oracle
    return (none - mpc) / gap if abs(gap) > 1e-6 * max(1.0, abs(none)) else None


# -- the replay --------------------------------------------------------------------------------------
def replay(
    scenario: Scenario, days: float, strategies: Sequence[str], out_dir: Path, cycle_s: float = 60.0,
    seed: int | None = None, progress: ProgressFactory | None = None, report: bool = True,
    protocol: bool = False, mqtt_url: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every strategy over ``days`` days; write ``out_dir/kpis.json`` and ``out_dir/<strategy>/``.

    Returns what kpis.json holds plus ``wall_s`` per strategy (kept out of the file: it is not
    deterministic) and the planner's solve times under ``solve_s``. With ``report``, also
    ``out_dir/report.html`` (:func:`sim.report.write_report`); ``progress`` makes a bar per strategy.
    ``protocol`` runs every strategy but ``none`` over real Modbus TCP and MQTT (:mod:`sim.replay_protocol`).
    """
    if report:
        require_plotting()
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    results: dict[str, Any] = {}
    wall: dict[str, float] = {}
    solves: dict[str, list[float]] = {}
    for strategy in strategies:
        over_protocol = protocol and strategy != "none"
        if over_protocol:
            from sim.replay_protocol import run_strategy_protocol

            run = asyncio.run(run_strategy_protocol(scenario, strategy, days * 24.0, cycle_s, out_dir / strategy,
                                                    mqtt_url))  # fmt: skip
        else:
            bar = progress(strategy, days * 24.0) if progress else contextlib.nullcontext()
            with bar as tick:
                run = asyncio.run(run_strategy(scenario, strategy, days * 24.0, cycle_s, tick))
        total = derived(dict(run.total), run.total["green_utilization"] * run.total["pv_available_kwh"], scenario)
        results[strategy] = {
            "total": total, "days": per_day(run, scenario) if not over_protocol or days <= 1 else [],
            "run": {"cycles": run.cycles, "decide_errors": run.decide_errors, "replans": len(run.plans.statuses),
                    "fallback_plans": run.plans.fallbacks, "protocol": over_protocol},
        }  # fmt: skip
        wall[strategy], solves[strategy] = run.wall_s, run.plans.solve_s
        write_results(out_dir / strategy, total, run.rows)
    started = time.perf_counter()
    try:
        results["bound_bill_cny"] = bound_bill(scenario, days * 24.0)
    except ValueError as e:  # a start off the quarter hour, a replay not made of whole blocks
        log.warning("no perfect-foresight bound: %s", e)
        results["bound_bill_cny"] = None
    wall["bound"] = time.perf_counter() - started
    results["savings_captured"] = captured(results, "bill_cny")
    results["grey_import_captured"] = captured(results, "grid_import_kwh")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kpis.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if report:
        write_report(out_dir, results, scenario, strategies, cycle_s=cycle_s)
    return {**results, "wall_s": wall, "solve_s": solves}


# -- command line ------------------------------------------------------------------------------------
TABLE = (
    ("bill CNY", "bill_cny", "{:.0f}"), ("operating cost CNY", "operating_cost_cny", "{:.0f}"),
    ("energy cost CNY", "energy_cost_cny", "{:.0f}"), ("demand charge CNY", "demand_charge_cny", "{:.0f}"),
    ("grid import kWh", "grid_import_kwh", "{:.0f}"), ("grid export kWh", "grid_export_kwh", "{:.1f}"),
    ("green utilization", "green_utilization", "{:.1%}"), ("PV curtailed kWh", "pv_curtailed_kwh", "{:.0f}"),
    ("battery charge kWh", "battery_charge_kwh", "{:.0f}"), ("load shed kWh", "load_shed_kwh", "{:.0f}"),
    ("peak import kW (15 min)", "peak_import_kw", "{:.0f}"), ("CO2 kg", "co2_kg", "{:.0f}"),
    ("export violation s", "export_limit_violation_s", "{:.0f}"),
    ("import violation s", "import_limit_violation_s", "{:.0f}"),
    ("balance error kWh", "energy_balance_error_kwh", "{:.2e}"),
)  # fmt: skip


def format_table(result: dict[str, Any], strategies: Sequence[str]) -> str:
    width = max(len(label) for label, _, _ in TABLE) + 2
    lines = ["".ljust(width) + "".join(s.rjust(12) for s in strategies)]
    for label, key, fmt in TABLE:
        lines.append(label.ljust(width) + "".join(fmt.format(result[s]["total"][key]).rjust(12) for s in strategies))
    lines.append("re-plans".ljust(width) + "".join(str(result[s]["run"]["replans"]).rjust(12) for s in strategies))
    lines.append("wall s".ljust(width) + "".join(f"{result['wall_s'][s]:.1f}".rjust(12) for s in strategies))
    bound = result.get("bound_bill_cny")
    lines.append("perfect-foresight bound: " + ("n/a" if bound is None else
                 f"{bound:,.0f} CNY (no run keeping the grid limits can cost less)"))  # fmt: skip
    for name in ("savings_captured", "grey_import_captured"):
        v = result[name]
        lines.append(f"{name}: " + ("n/a (needs none, mpc and oracle)" if v is None else f"{v:.1%}"))
    return "\n".join(lines)
