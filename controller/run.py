"""``parkctl run``: the controller against real devices, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from pathlib import Path

from controller.build import build_controller
from controller.config import load_config
from controller.forecast import Forecaster
from controller.sdnotify import SystemdNotifier
from parkctl.clock import WallClock

log = logging.getLogger(__name__)


async def run_controller(config_path: Path, forecaster: Forecaster | None = None) -> None:
    config = load_config(config_path)
    clock = WallClock(_tz(config.site.timezone))
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
            ctl.runtime.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            notifier.close()


def _tz(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
