"""Prove a load's command path works again, so a load_no_ack alarm does not wait for the next shed.

Only an acknowledged command shows that a load answers commands again; left alone, the next one may
come hours later. While a load's ``load_no_ack`` alarm is active, the probe sends it, at most every
``every_s`` of the clock, the command it already obeys: ``restore`` to a load that reports running and
that the controller wants running. The device refuses it ("not shed") or confirms it; either answer is
an acknowledgement and clears the alarm. A load wanted shed, or not reporting, is never probed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from controller.cycle import CycleReport
from drivers.capabilities import ControllableLoad

log = logging.getLogger(__name__)

PROBE_EVERY_S = 60.0


class AckProbe:
    def __init__(self, loads: Mapping[str, ControllableLoad], every_s: float = PROBE_EVERY_S) -> None:
        self.loads, self.every_s = loads, every_s
        self.sent: dict[str, int] = {}  # load id -> probes sent (commands a device saw outside the writer)
        self._last: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def check(self, report: CycleReport, silent: Iterable[str], acked: Callable[[str], None]) -> None:
        """Probe each of the ``silent`` loads that may be probed now; ``acked(load_id)`` on an answer."""
        for lid in silent:
            load, reading = self.loads.get(lid), report.snapshot.loads.get(lid)
            last = self._last.get(lid)
            due = last is None or (report.ts - last).total_seconds() >= self.every_s
            if load is None or reading is None or not reading.running or report.setpoints.load_shed.get(lid) or not due:
                continue
            self._last[lid] = report.ts
            self.sent[lid] = self.sent.get(lid, 0) + 1
            task = asyncio.get_running_loop().create_task(self._probe(lid, load, acked), name=f"ack-probe-{lid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _probe(lid: str, load: ControllableLoad, acked: Callable[[str], None]) -> None:
        try:
            outcome = await load.restore()
        except Exception:  # a probe must never take anything down
            log.exception("ack probe of %s failed", lid)
            return
        if outcome.acked:
            acked(lid)
