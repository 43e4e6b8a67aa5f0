"""Optimizer benchmark: build, load, solve and total seconds, status and gaps, on seeded synthetic parks.

Run: ``.venv/bin/python bench/optimizer_bench.py [--seed N] [--quick]``. Cases:

- small: 96 x 15 min, 1 battery, 4 PV plants, 20 loads (10 interruptible on/off, 10 deferrable);
  target under 0.5 s total.
- large: 288 x 5 min, 100 devices (6 batteries, 40 PV plants, 30 interruptible on/off, 24 deferrable);
  target under 5 s at <= 0.5 % gap.
- rolling: the small and the large park re-solved in place after the data move on by one step (new
  forecast noise, new initial SoC, prices shifted) against a cold solve of the same data; target >= 2x.
- route: loading the large model into HiGHS through the standard-form compiler + passModel versus
  Pyomo's persistent HiGHS interface (``pyomo.contrib.solver``), the reason for the chosen route.

The parks are synthetic but shaped like the Chenzhou pilot: Hunan summer time-of-use prices, zero export,
a 32 CNY/kW-month demand charge with the month's peak so far near the evening load, PV on a clear-sky
bell with seeded cloud dips, a two-shift industrial base load, a DR reduction event 17:00-19:00 and an
import-cap event 19:00-20:00.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import highspy
import numpy as np
import pyomo
import pyomo.environ as pyo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.command import tariff_series
from optimizer.data import derive
from optimizer.inputs import (
    BatteryInput,
    DeferrableInput,
    DrEvent,
    InterruptibleInput,
    OptimizerInputs,
    PvInput,
    SolverSettings,
)
from optimizer.lp import build_and_compile, new_highs, vectors
from optimizer.persistent import RollingOptimizer
from optimizer.plan import Plan
from sim.scenario import load_scenario

TZ = ZoneInfo("Asia/Shanghai")


def synthetic_park(
    seed: int, n_steps: int, step_s: int, n_bat: int, n_pv: int, n_int: int, n_def: int, shift: int = 0,
    time_limit_s: float = 30.0,
) -> OptimizerInputs:  # fmt: skip
    """A seeded park; ``shift`` moves the horizon on by that many steps (rolling re-solve)."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 7, 15, tzinfo=TZ)
    start = start.fromtimestamp(start.timestamp() + shift * step_s, TZ)
    t_h = (np.arange(n_steps) + shift + 0.5) * step_s / 3600.0
    hod = t_h % 24
    sun = np.clip(np.sin(np.pi * (hod - 6.0) / 13.0), 0, None) ** 1.2
    ac = rng.uniform(300, 1500, n_pv)
    noise = np.random.default_rng(seed + 1000 + shift)  # forecasts differ between rolling solves
    pv = []
    for i in range(n_pv):
        dips = 1 - 0.6 * (noise.random(n_steps) < 0.15) * noise.random(n_steps)
        pv.append(PvInput(id=f"pv{i}", available_kw=ac[i] * 0.85 * sun * dips))
    pv_cap = float(ac.sum())
    shift_level = np.where((hod >= 8) & (hod < 22), 1.0, 0.4)
    base = 0.45 * pv_cap * shift_level * (1 + 0.03 * noise.standard_normal(n_steps))
    ints = []
    for i in range(n_int):
        ints.append(InterruptibleInput(
            id=f"il{i}", running_kw=float(rng.uniform(0.5, 1.5) * 0.2 * pv_cap / max(n_int, 1)),
            max_shed_s=3600, min_shed_s=600, min_gap_s=1800, max_sheds_per_day=int(rng.integers(2, 5)),
            rebound_factor=float(rng.uniform(0.2, 0.6)), rebound_s=1800,
            shed_cost_cny_per_kwh=float(rng.uniform(0.8, 2.5)),
        ))  # fmt: skip
    defs = []
    for i in range(n_def):
        first = int(rng.integers(0, n_steps // 2))
        end = min(n_steps, first + int(n_steps * rng.uniform(0.15, 0.45)))
        p_max = float(rng.uniform(0.5, 1.5) * 0.15 * pv_cap / max(n_def, 1))
        defs.append(DeferrableInput(
            id=f"dl{i}", energy_kwh=p_max * (end - first) * step_s / 3600 * float(rng.uniform(0.3, 0.6)),
            p_min_kw=p_max * float(rng.choice([0.0, 0.3])), p_max_kw=p_max,
            min_run_s=float(rng.choice([0, 1800, 3600])), window_start=first, window_end=end,
        ))  # fmt: skip
    soc0 = 30.0 + 10.0 * noise.random() if shift else 30.0
    bats = [BatteryInput(id=f"bess{i}", capacity_kwh=float(rng.uniform(1000, 4000)), p_charge_max_kw=1000,
                         p_discharge_max_kw=1000, soc_init_pct=soc0, soc_terminal_pct=30.0,
                         degradation_cny_per_kwh=0.05) for i in range(n_bat)]  # fmt: skip
    prices, periods = tariff_series(load_scenario("chenzhou-summer-weekday").tariff, start, step_s, n_steps)
    steps_h = 3600 // step_s
    evening = base + sum(ld.running_kw for ld in ints)
    events = []
    if n_steps >= 20 * steps_h:
        w0, w1 = max(0, 17 * steps_h - shift), max(1, 19 * steps_h - shift)
        events.append(DrEvent(id="dr-red", kind="reduction", first_step=w0, end_step=w1, penalty_cny_per_kwh=5.0,
                              committed_kw=0.05 * float(evening[w0:w1].mean()),
                              baseline_kw=evening[w0:w1]))  # fmt: skip
        events.append(DrEvent(id="dr-cap", kind="import_cap", first_step=19 * steps_h - shift,
                              end_step=20 * steps_h - shift, penalty_cny_per_kwh=5.0,
                              cap_kw=0.95 * float(evening.max())))  # fmt: skip
    n = n_steps
    return OptimizerInputs(
        start=start, step_s=step_s, n_steps=n, base_load_kw=base, import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=np.zeros(n), import_cap_kw=np.full(n, 1.3 * float(evening.max())),
        export_cap_kw=np.zeros(n), carbon_kg_per_kwh=np.full(n, 0.5366), tou_period=periods,
        demand_charge_cny_per_kw=32.0, month_peak_so_far_kw=0.9 * float(evening.max()), pv=pv, batteries=bats,
        interruptible_loads=ints, deferrable_loads=defs, dr_events=events,
        settings=SolverSettings(time_limit_s=time_limit_s, mip_rel_gap=0.005),
    )  # fmt: skip


def _size(inp: OptimizerInputs) -> str:
    n_dev = len(inp.pv) + len(inp.batteries) + len(inp.interruptible_loads) + len(inp.deferrable_loads)
    return (f"{inp.n_steps} steps x {inp.step_s // 60} min, {n_dev} devices ({len(inp.batteries)} batteries, "
            f"{len(inp.pv)} PV, {len(inp.interruptible_loads)} interruptible, {len(inp.deferrable_loads)} "
            f"deferrable), {len(inp.dr_events)} DR events")  # fmt: skip


def _gap(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.3f} %"


def _report(name: str, plan: Plan, target: str) -> None:
    t = plan.timings
    print(f"  {name}: build {t.build_s:.3f} s | load {t.load_s:.3f} s | solve {t.solve_s:.3f} s | "
          f"total {t.total_s:.3f} s | status {plan.status}{' (fallback)' if plan.fallback else ''} | "
          f"mip gap {_gap(plan.mip_gap)} | green gap {_gap(plan.green_gap)} | rebuilt {t.rebuilt}")  # fmt: skip
    print(f"    green {plan.objective.green_kwh:.1f} kWh of {plan.objective.pv_available_kwh:.1f} kWh PV, "
          f"cost {plan.objective.cost_cny:.2f} CNY; target: {target}")  # fmt: skip
    print(f"    {plan.message}")


def _cold(inp: OptimizerInputs) -> Plan:
    gc.collect()  # a dropped Pyomo model is cyclic garbage: collect it outside the measurement
    return RollingOptimizer().solve(inp)


def case(name: str, inp: OptimizerInputs, limit_s: float, max_gap: float | None) -> None:
    print(f"[{name}] {_size(inp)}")
    plan = _cold(inp)
    ok = plan.timings.total_s < limit_s and (max_gap is None or (plan.mip_gap or 0.0) <= max_gap)
    gap_txt = f" at <= {100 * max_gap:.1f} % gap" if max_gap is not None else ""
    _report("cold", plan, f"total < {limit_s} s{gap_txt} -> {'MET' if ok else 'MISSED'}")


def rolling(name: str, make: object) -> None:
    first, moved = make(0), make(1)  # type: ignore[operator]
    print(f"[rolling {name}] {_size(first)}; re-solve after one step: new forecasts, SoC, shifted prices")
    ro = RollingOptimizer()
    gc.collect()
    _report("first (cold)", ro.solve(first), "-")
    gc.collect()
    warm = ro.solve(moved)
    cold = _cold(moved)
    _report("re-solve (warm)", warm, "-")
    _report("same data cold", cold, "-")
    speed = cold.timings.total_s / max(warm.timings.total_s, 1e-9)
    print(f"    speed-up {speed:.2f}x (target >= 2x -> {'MET' if speed >= 2 else 'MISSED'}); "
          f"cost warm {warm.objective.cost_cny:.2f} vs cold {cold.objective.cost_cny:.2f} CNY")  # fmt: skip


def route(inp: OptimizerInputs) -> None:
    """Load the same LP both ways (HiGHS not solving), to justify the route."""
    from pyomo.contrib.solver.solvers.highs import Highs as PyomoHighs

    d = derive(inp)
    m, layout, build_s, compile_s = build_and_compile(d)
    t0 = time.perf_counter()
    new_highs(layout, vectors(layout, d))
    pass_s = time.perf_counter() - t0
    m.obj_green.deactivate()
    m.obj_cost.activate()
    t0 = time.perf_counter()
    PyomoHighs().set_instance(m)
    persistent_s = time.perf_counter() - t0
    print(f"[route] {layout.n_col} columns, {layout.n_row} rows, {len(layout.a_value)} nonzeros; "
          f"Pyomo build {build_s:.3f} s")  # fmt: skip
    print(f"  standard form + passModel: {compile_s + pass_s:.3f} s (compile {compile_s:.3f} + pass {pass_s:.3f}); "
          f"pyomo.contrib.solver Highs.set_instance: {persistent_s:.3f} s "
          f"({persistent_s / (compile_s + pass_s):.1f}x slower)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20260715)
    ap.add_argument("--quick", action="store_true", help="small case and small rolling only")
    a = ap.parse_args()
    print(f"optimizer bench | seed {a.seed} | {os.cpu_count()} cores | {platform.processor() or platform.machine()}"
          f" | Python {platform.python_version()} | Pyomo {pyomo.version.version} | highspy {highspy.Highs().version()}"
          f" | numpy {np.__version__} | load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    pyo.ConcreteModel()  # import-time costs are not part of a solve
    warm = synthetic_park(a.seed, 8, 900, 1, 1, 1, 1)
    _cold(warm)
    small = lambda shift=0: synthetic_park(a.seed, 96, 900, 1, 4, 10, 10, shift)  # noqa: E731
    large = lambda shift=0: synthetic_park(a.seed, 288, 300, 6, 40, 30, 24, shift, 60.0)  # noqa: E731
    case("small", small(), 0.5, None)
    rolling("small", small)
    if a.quick:
        return
    case("large", large(), 5.0, 0.005)
    rolling("large", large)
    route(large())


if __name__ == "__main__":
    main()
