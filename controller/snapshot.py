"""The process image: one consistent view of the park at the start of a cycle.

Built once per cycle from whatever the read phase obtained. A device that could not be read, or
whose value is older than allowed, appears as ``None``: decisions never run on stale data without
knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from drivers.capabilities import BatteryReading, LoadReading, MeterReading, PvReading


@dataclass(frozen=True, slots=True)
class Snapshot:
    ts: datetime
    meter: MeterReading | None
    pv: dict[str, PvReading | None] = field(default_factory=dict)
    batteries: dict[str, BatteryReading | None] = field(default_factory=dict)
    loads: dict[str, LoadReading | None] = field(default_factory=dict)
    # when each load the controller holds shed was told to go: its device ends the shed by itself after
    # its maximum shed time, and the dispatch must have the import room ready when it does
    shed_since: dict[str, datetime] = field(default_factory=dict)

    @property
    def pv_kw(self) -> float:
        """Measured PV output of the plants that could be read."""
        return sum(r.p_kw for r in self.pv.values() if r is not None)

    @property
    def battery_kw(self) -> float:
        """Measured battery power (+ discharge) of the batteries that could be read."""
        return sum(r.p_kw for r in self.batteries.values() if r is not None)

    @property
    def complete(self) -> bool:
        """True when every device was read this cycle."""
        parts = [*self.pv.values(), *self.batteries.values()]
        return self.meter is not None and all(r is not None for r in parts)

    def site_load_kw(self) -> float | None:
        """Site consumption inferred at the point of connection: grid + PV + battery.

        ``None`` when the meter is missing; PV or batteries that could not be read make the figure
        unreliable, which the caller sees through :attr:`complete`.
        """
        if self.meter is None:
            return None
        return self.meter.p_kw + self.pv_kw + self.battery_kw
