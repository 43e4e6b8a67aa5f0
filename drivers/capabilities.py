"""Small capability interfaces the controller discovers at run time, and the readings they return.

A device driver implements one or more of these (a hybrid inverter may be both ``PvInverter`` and
``Storage``). The controller never needs to know which protocol is underneath. Readings are frozen
values stamped with the time they were taken; a driver that cannot read raises :class:`DeviceError`
instead of returning an old value, so stale data is never silently passed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PvReading:
    ts: datetime
    p_kw: float  # AC output, >= 0
    rated_kw: float  # AC nameplate
    limit_pct: float | None  # active-power limit in force (None: no limit enabled)
    energy_kwh: float | None = None


@dataclass(frozen=True, slots=True)
class BatteryReading:
    ts: datetime
    p_kw: float  # + discharge / - charge
    soc_pct: float
    capacity_kwh: float
    max_charge_kw: float  # what the device says it can take now
    max_discharge_kw: float  # what the device says it can give now
    soh_pct: float | None = None


@dataclass(frozen=True, slots=True)
class MeterReading:
    ts: datetime
    p_kw: float  # + import / - export at the point of connection
    import_kwh: float | None = None
    export_kwh: float | None = None


@dataclass(frozen=True, slots=True)
class LoadReading:
    ts: datetime
    p_kw: float
    running: bool  # False while shed
    online: bool = True


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What came back from a command to a device: an acknowledgement, a refusal or nothing."""

    acked: bool
    accepted: bool
    reason: str = ""


@runtime_checkable
class Meter(Protocol):
    id: str

    async def read_meter(self) -> MeterReading: ...


@runtime_checkable
class PvInverter(Protocol):
    id: str

    async def read_pv(self) -> PvReading: ...

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        """Cap AC output at ``limit_kw``; ``None`` lifts the cap."""
        ...


@runtime_checkable
class Storage(Protocol):
    id: str

    async def read_battery(self) -> BatteryReading: ...

    async def set_battery_power(self, p_kw: float) -> None:
        """Ask for ``p_kw`` (+ discharge / - charge). Must be re-sent before the device watchdog expires."""
        ...


@runtime_checkable
class ControllableLoad(Protocol):
    id: str

    def latest_load(self) -> LoadReading | None:
        """The last report the load pushed, or None when there is none fresh enough to trust."""
        ...

    async def shed(self) -> CommandOutcome: ...

    async def restore(self) -> CommandOutcome: ...
