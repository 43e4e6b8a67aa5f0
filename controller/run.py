"""``parkctl run``: the controller against real devices, until SIGTERM or Ctrl-C.

``--sim-clock`` (drills only) replaces the wall clock by a :class:`~parkctl.clock.ScaledClock` that a
simulated park in another process shares: that is how :mod:`sim.kill_drill` SIGKILLs a real controller
process in the middle of a simulated demand-response event and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from controller.build import build_controller
from controller.config import ControllerConfig, load_config
from controller.forecast import Forecaster
from controller.sdnotify import SystemdNotifier
from parkctl.clock import Clock, ScaledClock, WallClock

log = logging.getLogger(__name__)

SIM_CLOCK_FORMAT = "START@ANCHOR_UNIX_S:SPEED"
STOP_SLACK_S = 1.0  # beyond the cycle's own timeouts, for its observers (store, alarms, telemetry)


@dataclass(frozen=True)
class SimClockSpec:
    """A scaled clock agreed with a simulated park: ``start`` (aware) at wall instant ``anchor_unix_s``."""

    start: datetime
    anchor_unix_s: float
    speed: float

    def __str__(self) -> str:
        return f"{self.start.isoformat()}@{self.anchor_unix_s!r}:{self.speed!r}"

    def clock(self, tz: ZoneInfo) -> ScaledClock:
        return ScaledClock(self.start.astimezone(tz), self.anchor_unix_s, self.speed)


def parse_sim_clock(text: str) -> SimClockSpec:
    """``2026-07-15T15:45:00+08:00@1763952000.5:40``; a ValueError names the field that is wrong."""
    start_text, at, rest = text.partition("@")
    if not at:
        raise ValueError(f"expected {SIM_CLOCK_FORMAT}, not {text!r}")
    anchor_text, colon, speed_text = rest.rpartition(":")
    if not colon:
        raise ValueError(f"expected {SIM_CLOCK_FORMAT}: no ':SPEED' after the anchor in {text!r}")
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError:
        raise ValueError(f"START must be an ISO-8601 time, not {start_text!r}") from None
    if start.tzinfo is None:
        raise ValueError(f"START must carry a UTC offset, e.g. 2026-07-15T15:45:00+08:00, not {start_text!r}")
    try:
        anchor = float(anchor_text)
    except ValueError:
        raise ValueError(f"ANCHOR_UNIX_S must be a number of seconds, not {anchor_text!r}") from None
    if not math.isfinite(anchor) or anchor < 0:
        raise ValueError(f"ANCHOR_UNIX_S must be a finite non-negative number, not {anchor_text!r}")
    try:
        speed = float(speed_text.removesuffix("x"))
    except ValueError:
        raise ValueError(f"SPEED must be a factor such as 40, not {speed_text!r}") from None
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"SPEED must be a positive finite factor, not {speed_text!r}")
    return SimClockSpec(start, anchor, speed)


async def run_controller(
    config_path: Path, forecaster: Forecaster | None = None, sim_clock: SimClockSpec | None = None
) -> None:
    config = load_config(config_path)
    tz = ZoneInfo(config.site.timezone)
    clock: Clock = WallClock(tz) if sim_clock is None else sim_clock.clock(tz)
    if sim_clock is not None:
        log.warning("simulated clock %s (a drill against a simulated park, never a real site)", sim_clock)
    notifier = SystemdNotifier()  # does nothing outside systemd
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with build_controller(config, clock, observers=[notifier], forecaster=forecaster) as ctl:
        gc.collect()
        gc.freeze()  # start-up objects never die: keep full collections short (see bench/cycle_bench.py)
        tasks = [asyncio.create_task(job) for job in ctl.tasks()]
        log.info("controller for site %s running (%s strategy)", config.site.name, config.strategy)
        try:
            await stop.wait()
        finally:
            notifier.stopping()
            # let the cycle under way finish: cancelled mid-write, its journalled writes would stay unresolved
            # in the store (ok = -1) although they returned; the next cycle never starts
            ctl.runtime.stop()
            await asyncio.wait(tasks[:1], timeout=_stop_grace_s(config))  # Controller.tasks(): the cycle first
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            notifier.close()


def _stop_grace_s(config: ControllerConfig) -> float:
    """How long a cycle under way may still take: its reads and writes time out, its observers are quick."""
    return config.cycle.read_timeout_s + config.cycle.write_timeout_s + STOP_SLACK_S
