"""A replay strategy over the real protocols: the simulated day of ``parkctl sim``, one per strategy.

``parkctl replay --protocol`` runs ``rules``, ``mpc`` and ``oracle`` (``mpc`` on a forecaster without
error) exactly as ``parkctl sim`` does: the park behind real pymodbus servers and a real Mosquitto, the
controller built from its configuration. ``none`` sends nothing to any device, so it has no protocol
to run over and is replayed in process. The park's counters are read at the end of the run only, so
KPIs per day exist for one-day replays; longer ones report their totals.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sim.day import SimOptions, simulate_day
from sim.replay import PlanStats, StrategyRun, perfect_foresight
from sim.scenario import Scenario


async def run_strategy_protocol(scenario: Scenario, strategy: str, hours: float, cycle_s: float, out_dir: Path,
                                mqtt_url: str | None = None) -> StrategyRun:  # fmt: skip
    """Run ``strategy`` (rules, mpc or oracle) over real sockets for ``hours``; files go to ``out_dir``."""
    if strategy not in ("rules", "mpc", "oracle"):
        raise ValueError(f"strategy {strategy!r} has no controller to run over the protocols")
    started = time.perf_counter()
    planned = perfect_foresight(scenario) if strategy == "oracle" else scenario
    options = SimOptions(hours=hours, strategy="rules" if strategy == "rules" else "mpc", mqtt_url=mqtt_url,
                         cycle_s=cycle_s, out_dir=out_dir)  # fmt: skip
    result = await simulate_day(planned, options)
    with (out_dir / "timeseries.csv").open(newline="", encoding="utf-8") as fh:
        rows: list[dict[str, object]] = list(csv.DictReader(fh))
    return StrategyRun(strategy, dict(result.kpis), [], rows, result.cycles, 0, PlanStats(),
                       time.perf_counter() - started)  # fmt: skip
