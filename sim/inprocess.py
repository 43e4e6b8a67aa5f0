"""Capability objects that talk to a :class:`~sim.park.Park` directly, with no sockets in between.

They reproduce what the SunSpec drivers and the MQTT load bus make of the simulated devices (see
:mod:`drivers.sunspec_devices` and :mod:`sim.sunspec_images`), so a replay in process decides on the
same readings and sends the same commands as a run over Modbus TCP and MQTT, only much faster:

- PV: a limit goes over as a percent of the AC rating at the register resolution (0.01 %), lifting
  it disables the limit; the limit never reverts on its own (the driver writes ``RvrtTms = 0``).
- Storage: the setpoint is a percent of ``WChaMax`` (the larger of the charge/discharge ratings) at
  0.01 % resolution, clipped to 100 %, with the device watchdog armed at ``revert_s`` (60 s).
- Loads: a command is always acknowledged; the device's answer says whether it was accepted.

Readings are stamped with the clock, as the drivers stamp theirs.
"""

from __future__ import annotations

import math

from drivers.capabilities import BatteryReading, CommandOutcome, LoadReading, MeterReading, PvReading
from parkctl.clock import Clock
from sim.park import Park

BATTERY_REVERT_S = 60  # what controller.build asks of the SunSpec storage driver
_RESOLUTION_PCT = 0.01  # WMaxLimPct_SF / InOutWRte_SF = -2 on the simulated devices


def _quantise(pct: float) -> float:
    return round(pct / _RESOLUTION_PCT) * _RESOLUTION_PCT


class _InProcess:
    def __init__(self, id: str, park: Park, clock: Clock) -> None:
        self.id, self.park, self.clock = id, park, clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


class InProcessPv(_InProcess):
    """A PV plant: reads output and limit, caps AC output as a percent of the rating."""

    def __init__(self, id: str, park: Park, clock: Clock) -> None:
        super().__init__(id, park, clock)
        self.rated_kw = next(p.ac_kw for p in park.scenario.pv if p.id == id)

    async def read_pv(self) -> PvReading:
        s = self.park.pv_state(self.id)
        return PvReading(ts=self.clock.now(), p_kw=max(s.p_kw, 0.0), rated_kw=self.rated_kw,
                         limit_pct=s.limit_pct if s.limit_enabled else None, energy_kwh=s.energy_kwh)

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        if limit_kw is not None and not (math.isfinite(limit_kw) and limit_kw >= 0):
            raise ValueError(f"limit_kw must be >= 0 or None, got {limit_kw}")
        pct = None if limit_kw is None else _quantise(min(100.0, limit_kw / self.rated_kw * 100))
        self.park.set_pv_limit(self.id, pct, None)


class InProcessStorage(_InProcess):
    """A battery: reads power, SoC and what it can do now; sets power with the device watchdog armed."""

    def __init__(self, id: str, park: Park, clock: Clock, revert_s: float = BATTERY_REVERT_S) -> None:
        super().__init__(id, park, clock)
        spec = next(b for b in park.scenario.batteries if b.id == id)
        self.capacity_kwh = spec.capacity_kwh
        self.wchamax_kw = max(spec.p_charge_max_kw, spec.p_discharge_max_kw)
        self.revert_s = revert_s

    async def read_battery(self) -> BatteryReading:
        s = self.park.battery_state(self.id)
        return BatteryReading(ts=self.clock.now(), p_kw=s.p_kw, soc_pct=s.soc_pct, capacity_kwh=self.capacity_kwh,
                              max_charge_kw=s.available_charge_kw, max_discharge_kw=s.available_discharge_kw,
                              soh_pct=s.soh_pct)  # fmt: skip

    async def set_battery_power(self, p_kw: float) -> None:
        if not math.isfinite(p_kw):
            raise ValueError(f"p_kw must be finite, got {p_kw}")
        pct = _quantise(min(100.0, abs(p_kw) / self.wchamax_kw * 100))
        self.park.set_battery_power(self.id, math.copysign(pct, p_kw) * self.wchamax_kw / 100, self.revert_s)


class InProcessMeter(_InProcess):
    """The grid meter at the point of connection (+ import)."""

    async def read_meter(self) -> MeterReading:
        s = self.park.meter_state()
        return MeterReading(ts=self.clock.now(), p_kw=s.p_kw, import_kwh=s.import_kwh, export_kwh=s.export_kwh)


class InProcessLoad(_InProcess):
    """An interruptible load: its state now, and shed/restore answered by the device at once."""

    def latest_load(self) -> LoadReading | None:
        s = self.park.load_state(self.id)
        return LoadReading(ts=self.clock.now(), p_kw=s.p_kw, running=s.running, online=True)

    async def shed(self) -> CommandOutcome:
        r = self.park.request_shed(self.id)
        return CommandOutcome(acked=True, accepted=r.accepted, reason=r.reason)

    async def restore(self) -> CommandOutcome:
        r = self.park.request_restore(self.id)
        return CommandOutcome(acked=True, accepted=r.accepted, reason=r.reason)


def park_devices(park: Park, clock: Clock) -> list[object]:
    """Every device of the park as capability objects, meter first (ids as the scenario names them)."""
    devices: list[object] = [InProcessMeter("meter", park, clock)]
    devices += [InProcessPv(pid, park, clock) for pid in park.pv_ids]
    devices += [InProcessStorage(bid, park, clock) for bid in park.battery_ids]
    devices += [InProcessLoad(lid, park, clock) for lid in park.load_ids]
    return devices
