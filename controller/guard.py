"""The one gate every setpoint passes just before a driver is called: allow-list and clamps per device.

Rules, plans and demand-response events all end in :meth:`controller.writer.SetpointWriter.write`,
which filters what it was asked through :meth:`WriteGuard.filter` first. So whatever a plan or an
event says, a device only gets the kinds of writes its configuration allows (``writes``,
``allow_shed``), battery power stays within ``max_charge_kw``/``max_discharge_kw`` and a PV cap never
goes below ``min_pv_limit_pct`` of the rating. A non-finite value is refused. Clamping is silent
apart from a counter (it is the configured behaviour); a refusal is counted, logged and reported as a
failed write with its reason, once per refused value rather than every cycle.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from controller.setpoints import Setpoints

if TYPE_CHECKING:
    from controller.config import ControllerConfig

log = logging.getLogger(__name__)

WriteKind = Literal["pv_limit", "battery_power", "load_shed"]
RECORD_KIND: Mapping[WriteKind, str] = {"pv_limit": "pv_limit_kw", "battery_power": "battery_p_kw",
                                        "load_shed": "load_shed"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    """What the controller may write to one device, and within which bounds."""

    writes: frozenset[WriteKind]
    min_pv_limit_kw: float = 0.0
    max_charge_kw: float = math.inf
    max_discharge_kw: float = math.inf


@dataclass(frozen=True, slots=True)
class Refusal:
    device: str
    kind: str  # as in WriteRecord: "pv_limit_kw", "battery_p_kw" or "load_shed"
    value: float | bool | None
    reason: str


class WriteGuard:
    """Filters :class:`Setpoints` against per-device policies; ``policies`` None allows every kind."""

    def __init__(self, policies: Mapping[str, DevicePolicy] | None = None) -> None:
        self._policies = None if policies is None else dict(policies)
        self.refusals: Counter[str] = Counter()  # device -> refused values (each counted once)
        self.clamped: Counter[str] = Counter()  # device -> writes moved into their bounds
        self._refused: dict[tuple[str, str], object] = {}  # the value last refused, to report it once

    @classmethod
    def from_config(cls, config: ControllerConfig) -> WriteGuard:
        policies: dict[str, DevicePolicy] = {}
        for d in config.modbus:
            rated = float(d.rated_kw or 0.0)
            policies[d.id] = DevicePolicy(
                writes=d.allowed_writes(), min_pv_limit_kw=d.min_pv_limit_pct / 100 * rated,
                max_charge_kw=math.inf if d.max_charge_kw is None else d.max_charge_kw,
                max_discharge_kw=math.inf if d.max_discharge_kw is None else d.max_discharge_kw,
            )  # fmt: skip
        for ld in config.loads:
            policies[ld.id] = DevicePolicy(writes=frozenset({"load_shed"} if ld.allow_shed else ()))
        return cls(policies)

    def filter(self, wanted: Setpoints) -> tuple[Setpoints, list[Refusal]]:
        """``wanted`` with refused entries left out and values clamped, and the new refusals."""
        refused: list[Refusal] = []
        pv: dict[str, float | None] = {}
        for dev, cap in wanted.pv_limit_kw.items():
            why = self._why_not(dev, "pv_limit") or (
                None if cap is None or (math.isfinite(cap) and cap >= 0) else "not a finite value >= 0"
            )
            if self._note(dev, "pv_limit", cap, why, refused):
                continue
            if cap is not None and cap < (low := self._policy(dev).min_pv_limit_kw):
                self.clamped[dev] += 1
                cap = float(low)
            pv[dev] = cap
        bat: dict[str, float] = {}
        for dev, p_kw in wanted.battery_p_kw.items():
            why = self._why_not(dev, "battery_power") or (None if math.isfinite(p_kw) else "not a finite value")
            if self._note(dev, "battery_power", p_kw, why, refused):
                continue
            pol = self._policy(dev)
            clamped = min(max(p_kw, -pol.max_charge_kw), pol.max_discharge_kw)
            if clamped != p_kw:
                self.clamped[dev] += 1
            bat[dev] = float(clamped)
        loads: dict[str, bool] = {}
        for dev, shed in wanted.load_shed.items():
            why = self._why_not(dev, "load_shed") if shed else None  # restoring a load is always allowed
            if not self._note(dev, "load_shed", shed, why, refused):
                loads[dev] = shed
        return replace(wanted, pv_limit_kw=pv, battery_p_kw=bat, load_shed=loads), refused

    def _policy(self, dev: str) -> DevicePolicy:
        if self._policies is None:
            return DevicePolicy(writes=frozenset(RECORD_KIND))
        return self._policies[dev]

    def _why_not(self, dev: str, kind: WriteKind) -> str | None:
        if self._policies is None:
            return None
        policy = self._policies.get(dev)
        if policy is None:
            return "device not in the configuration"
        if kind not in policy.writes:
            return f"{kind} is not in the device's write allow-list"
        return None

    def _note(self, dev: str, kind: WriteKind, value: float | bool | None, why: str | None,
              out: list[Refusal]) -> bool:  # fmt: skip
        """Record a refusal (the first time this value is refused); True when refused."""
        key = (dev, kind)
        if why is None:
            self._refused.pop(key, None)
            return False
        shown = None if isinstance(value, float) and not math.isfinite(value) else value
        last = self._refused.get(key, _NONE)
        if last is _NONE or last != shown:  # NaN compares unequal: stored as None above
            self._refused[key] = shown
            self.refusals[dev] += 1
            log.warning("refused %s %r for %s: %s", kind, value, dev, why)
            out.append(Refusal(dev, RECORD_KIND[kind], shown, why))
        return True


_NONE = object()
