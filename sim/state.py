"""What a simulated device shows the outside world at one instant.

These frozen values are the contract between the park's physics (``sim.park.Park``) and the protocol
adapters that serve it (Modbus servers, MQTT devices): adapters read states and send commands through
the park; they never touch the physics directly. Units and signs as in the README: kW, kWh, %, grid
import positive, battery discharge positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PvState:
    ts: datetime
    available_kw: float  # what the plant could produce now (irradiance, temperature, AC cap)
    p_kw: float  # actual AC output
    limit_pct: float  # active-power limit in % of the AC rating (100 when no limit is enabled)
    limit_enabled: bool
    energy_kwh: float  # lifetime AC energy counter


@dataclass(frozen=True, slots=True)
class BatteryState:
    ts: datetime
    p_kw: float  # actual AC power, + discharge / - charge
    setpoint_kw: float  # last accepted setpoint (0 after the watchdog idled it)
    soc_pct: float
    soh_pct: float
    available_charge_kw: float  # what it can take now, after derating near full
    available_discharge_kw: float  # what it can give now, after derating near empty
    charge_kwh: float  # lifetime AC energy into the battery
    discharge_kwh: float  # lifetime AC energy out of the battery
    watchdog_tripped: bool  # True while idled by the device-side watchdog


@dataclass(frozen=True, slots=True)
class MeterState:
    ts: datetime
    p_kw: float  # + import from the grid / - export
    import_kwh: float
    export_kwh: float
    voltage_v: float  # line-to-line at the point of connection
    frequency_hz: float


@dataclass(frozen=True, slots=True)
class LoadState:
    ts: datetime
    p_kw: float  # power drawn now (rebound included)
    running: bool  # False while shed
    shed_since: datetime | None
    sheds_today: int


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Answer of a device to a shed/restore request."""

    accepted: bool
    reason: str = ""
