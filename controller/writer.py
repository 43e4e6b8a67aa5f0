"""The write phase: send only what changed, and re-send before a device's own watchdog expires.

``commanded`` is what the devices were last told successfully; decide builds on it, so a failed
write is simply tried again next cycle. A Modbus write that timed out may still land late, after a
newer one, so the first write that succeeds after a failure is sent once more a cycle later. A load
that refused a command (minimum on/off time, say) is left alone for ``refusal_backoff_s`` instead of
being asked again every cycle. With a ``journal`` (the store), every write is recorded before it
goes out, so a controller killed mid-write leaves a row for whatever a device may have applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from controller.devices import DeviceSet
from controller.guard import WriteGuard
from controller.setpoints import Setpoints
from parkctl.clock import Clock

if TYPE_CHECKING:
    from controller.cycle import CycleSettings
    from controller.snapshot import Snapshot

log = logging.getLogger(__name__)

REFUSAL_BACKOFF_S = 120.0


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One setpoint sent to one device, and whether it took."""

    ts: datetime
    device: str
    kind: str  # "pv_limit_kw", "battery_p_kw" or "load_shed"
    value: float | bool | None
    ok: bool
    reason: str = ""  # why it was not attempted (the write guard refused it); "" otherwise
    row_id: int | None = None  # the store's journal row written before it went out, if any


Intent = tuple[str, str, "float | bool | None"]  # device, kind, value
Journal = Callable[[datetime, Sequence[Intent]], Sequence[int]]


class SetpointWriter:
    def __init__(
        self, devices: DeviceSet, clock: Clock, settings: CycleSettings, errors: Counter[str],
        guard: WriteGuard | None = None, journal: Journal | None = None,
    ) -> None:  # fmt: skip
        self.devices = devices
        self.journal = journal  # records each write durably before it goes out (see controller.store)
        self.guard = guard or WriteGuard()  # every write passes it: see controller.guard
        self.clock = clock
        self.settings = settings
        self.errors = errors
        self.commanded = Setpoints(
            pv_limit_kw=dict.fromkeys(devices.pv, None),
            battery_p_kw=dict.fromkeys(devices.storage, 0.0),
            load_shed=dict.fromkeys(devices.loads, False),
        )
        self._sent_at: dict[str, datetime] = {}
        self._refused_until: dict[str, datetime] = {}
        self.refusals: Counter[str] = Counter()
        self._failed: set[str] = set()  # devices whose last write failed: it may still land, late
        self._confirm: set[str] = set()  # devices to send the current setpoint once more

    def reconcile_loads(self, snap: Snapshot) -> None:
        """Believe a load that runs although it was told to stay shed, once it has had a cycle to obey.

        A device restores itself after its maximum shed time (or a local operator starts it); keeping
        it marked shed would make every later restore look refused and the dispatch wait for a drop
        that is not coming.
        """
        grace = timedelta(seconds=self.settings.period_s)
        for lid, shed in self.commanded.load_shed.items():
            reading, sent = snap.loads.get(lid), self._sent_at.get(lid)
            if shed and reading is not None and reading.running and (sent is None or reading.ts - sent >= grace):
                log.info("load %s runs although shed: it restored itself; taking it as restored", lid)
                self.commanded = replace(self.commanded, load_shed={**self.commanded.load_shed, lid: False})

    def shed_since(self) -> dict[str, datetime]:
        """When each load held shed was told to go (the last command a load took was that shed)."""
        return {lid: self._sent_at[lid] for lid, shed in self.commanded.load_shed.items()
                if shed and lid in self._sent_at}  # fmt: skip

    def _due(self, key: str, now: datetime, resend_s: float) -> bool:
        last = self._sent_at.get(key)
        return last is None or (now - last).total_seconds() >= resend_s

    async def _attempt(self, key: str, call: Awaitable[object], errors: list[str]) -> bool:
        try:
            async with asyncio.timeout(self.settings.write_timeout_s):
                await call
        except Exception as exc:
            self.errors[key] += 1
            errors.append(f"write {key}: {exc!r}")
            self._failed.add(key)
            return False
        self._sent_at[key] = self.clock.now()
        if key in self._failed:
            self._failed.discard(key)
            self._confirm.add(key)
        else:
            self._confirm.discard(key)
        return True

    async def write(self, wanted: Setpoints, errors: list[str]) -> tuple[WriteRecord, ...]:
        """Write what differs from ``commanded`` (or is due again); returns what was attempted."""
        now = self.clock.now()
        wanted, refused = self.guard.filter(wanted)
        errors.extend(f"refused {r.kind} {r.device}: {r.reason}" for r in refused)
        s, old = self.settings, self.commanded
        jobs: list[tuple[str, str, object, Awaitable[bool]]] = []
        for pid, cap in wanted.pv_limit_kw.items():
            prev = old.pv_limit_kw.get(pid)
            changed = (cap is None) != (prev is None) or (
                cap is not None and prev is not None and abs(cap - prev) > s.deadband_kw
            )
            if pid in self.devices.pv and (changed or pid in self._confirm or self._due(pid, now, s.pv_resend_s)):
                call = self._attempt(pid, self.devices.pv[pid].set_pv_limit(cap), errors)
                jobs.append(("pv", pid, cap, call))
        for bid, p_kw in wanted.battery_p_kw.items():
            changed = abs(p_kw - old.battery_p_kw.get(bid, 0.0)) > s.deadband_kw
            due = changed or bid in self._confirm or self._due(bid, now, s.battery_resend_s)
            if bid in self.devices.storage and due:
                call = self._attempt(bid, self.devices.storage[bid].set_battery_power(p_kw), errors)
                jobs.append(("battery", bid, p_kw, call))
        for lid, shed in wanted.load_shed.items():
            if lid in self.devices.loads and shed != old.load_shed.get(lid, False):
                if now < self._refused_until.get(lid, now):
                    continue
                jobs.append(("load", lid, shed, self._command_load(lid, shed, errors)))
        kinds = {"pv": "pv_limit_kw", "battery": "battery_p_kw", "load": "load_shed"}
        ids = self._journal(now, [(dev, kinds[kind], value) for kind, dev, value, _ in jobs])  # type: ignore[misc]
        results = await asyncio.gather(*(job[3] for job in jobs))
        pv, bat, loads = dict(old.pv_limit_kw), dict(old.battery_p_kw), dict(old.load_shed)
        for (kind, dev, value, _), ok in zip(jobs, results, strict=True):
            if not ok:
                continue
            if kind == "pv":
                pv[dev] = value  # type: ignore[assignment]
            elif kind == "battery":
                bat[dev] = value  # type: ignore[assignment]
            else:
                loads[dev] = value  # type: ignore[assignment]
        self.commanded = replace(old, pv_limit_kw=pv, battery_p_kw=bat, load_shed=loads, reason=wanted.reason)
        return tuple(
            WriteRecord(now, dev, kinds[kind], value, ok, row_id=row)  # type: ignore[arg-type]
            for (kind, dev, value, _), ok, row in zip(jobs, results, ids, strict=True)
        ) + tuple(WriteRecord(now, r.device, r.kind, r.value, False, r.reason) for r in refused)

    def _journal(self, now: datetime, intents: list[Intent]) -> list[int | None]:
        """Journal rows for ``intents``; a store that fails must not stop the writes (they are then
        recorded after the fact, as before)."""
        if not intents or self.journal is None:
            return [None] * len(intents)
        try:
            ids = list(self.journal(now, intents))
        except Exception:
            log.exception("could not journal %d writes before sending them", len(intents))
            return [None] * len(intents)
        out: list[int | None] = list(ids)
        return out if len(out) == len(intents) else [None] * len(intents)

    async def _command_load(self, lid: str, shed: bool, errors: list[str]) -> bool:
        load = self.devices.loads[lid]
        try:
            outcome = await asyncio.wait_for(
                load.shed() if shed else load.restore(), timeout=self.settings.write_timeout_s
            )
        except Exception as exc:
            self.errors[lid] += 1
            errors.append(f"command {lid}: {exc!r}")
            return False
        if not outcome.acked:
            self.errors[lid] += 1
            errors.append(f"command {lid}: no acknowledgement")
            return False
        if not outcome.accepted:
            self.refusals[lid] += 1
            self._refused_until[lid] = self.clock.now() + timedelta(seconds=REFUSAL_BACKOFF_S)
            log.info("load %s refused %s: %s", lid, "shed" if shed else "restore", outcome.reason)
            return False
        self._sent_at[lid] = self.clock.now()
        return True

