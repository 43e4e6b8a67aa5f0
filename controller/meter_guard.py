"""A meter that answers but has stopped measuring: refuse its readings once they are frozen.

A meter (or a gateway in front of it) can keep answering Modbus with the last values it had: the
driver stamps each reading with the time it was read, so nothing looks stale, and a controller steering
the grid on a frozen value walks the park past its limits. A live meter never repeats itself for
long: the power wobbles with the load and the energy registers count up. So when power and both energy
counters come back identical ``frozen_reads`` times in a row, the guard raises :class:`MeterFrozen`
(a :class:`DeviceError`: the cycle treats the meter as unread, as for any failed read) until a value
moves again.
"""

from __future__ import annotations

from drivers.capabilities import Meter, MeterReading
from parkctl.errors import DeviceError

FROZEN_READS = 4  # at a 15 s cycle: a minute without any change


class MeterFrozen(DeviceError):
    """The meter answers, but its values have not changed for too many reads."""


class FrozenMeterGuard:
    """Wraps a :class:`Meter`; same interface, frozen readings refused."""

    def __init__(self, inner: Meter, frozen_reads: int = FROZEN_READS) -> None:
        if frozen_reads < 2:
            raise ValueError("frozen_reads must be at least 2")
        self.inner, self.frozen_reads = inner, frozen_reads
        self.id: str = getattr(inner, "id", "meter")
        self._last: tuple[float, float | None, float | None] | None = None
        self._repeats = 0

    @property
    def frozen(self) -> bool:
        return self._repeats >= self.frozen_reads - 1

    async def read_meter(self) -> MeterReading:
        reading = await self.inner.read_meter()
        key = (reading.p_kw, reading.import_kwh, reading.export_kwh)
        self._repeats = self._repeats + 1 if key == self._last else 0
        self._last = key
        if self.frozen:
            raise MeterFrozen(f"{self.id}: values unchanged for {self._repeats + 1} reads (meter frozen?)")
        return reading
