"""Simulated prior days: the controller's database as weeks of normal operation would have left it.

Demand-response baselines are computed from the controller's own 15-minute history (the five most
recent working days, ten like days, ...), so a simulated event day needs days before it. They are made
the honest way: the same park (seeded differently, so every day has its own weather and load noise)
runs under the production rule-based controller, in process, for ``days`` days ending where the
scenario starts, and the controller's :class:`~controller.store.Store` records them in the database
the event day's controller then opens. Weekends come out lighter, as the base-load model makes them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from controller.build import make_decider
from controller.cycle import Runtime
from controller.devices import DeviceSet
from controller.guard import WriteGuard
from controller.store import Store, StoreSettings
from parkctl.clock import SimClock
from sim.inprocess import park_devices
from sim.park import Park
from sim.scenario import Scenario

SEED_STRIDE = 7919  # prior-day runs draw weather and noise from seeds far from the event day's


def prior_scenario(scenario: Scenario, days: int) -> Scenario:
    """The scenario moved ``days`` days earlier, with its own seed."""
    start = scenario.start - timedelta(days=days)
    return scenario.model_copy(update={"start": start, "seed": scenario.seed + SEED_STRIDE})


async def _run(scenario: Scenario, days: int, db_path: Path, cycle_s: float) -> int:
    from sim.replay import replay_config  # late: sim.replay imports heavy planner code

    prior = prior_scenario(scenario, days)
    clock = SimClock(prior.local_start, speed=None, paused=True)
    park = Park(prior, clock)
    config = replay_config(prior, cycle_s, "rules")
    store = Store.open(db_path, clock, StoreSettings(cycle_every=max(1, round(300 / cycle_s)),
                                                     max_hold_s=cycle_s))  # fmt: skip
    try:
        runtime = Runtime(DeviceSet.discover(park_devices(park, clock)), make_decider(config, None), clock,
                          config.cycle, [store], guard=WriteGuard.from_config(config))  # fmt: skip
        task = asyncio.create_task(runtime.run(until=scenario.local_start))
        clock.adopt(task)
        clock.resume()
        await task
        return runtime.stats.cycles
    finally:
        store.close()
        await clock.aclose()


async def seed_history(scenario: Scenario, days: int, db_path: Path, cycle_s: float = 60.0) -> int:
    """Write ``days`` days of rule-controlled operation before the scenario's start into ``db_path``.

    Returns the number of control cycles run. The database must not exist yet (a fresh run).
    """
    if days <= 0:
        return 0
    if db_path.exists():
        raise FileExistsError(f"{db_path} exists: prior history is only written into a fresh database")
    return await _run(scenario, days, db_path, cycle_s)
