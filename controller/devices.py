"""The devices a controller runs, sorted by capability at start-up.

A driver object may offer several capabilities; it is filed under each one it implements. The cycle
only ever talks to devices through these lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from drivers.capabilities import ControllableLoad, Meter, PvInverter, Storage


@dataclass(frozen=True)
class DeviceSet:
    meter: Meter | None = None
    pv: dict[str, PvInverter] = field(default_factory=dict)
    storage: dict[str, Storage] = field(default_factory=dict)
    loads: dict[str, ControllableLoad] = field(default_factory=dict)

    @classmethod
    def discover(cls, devices: Iterable[object]) -> DeviceSet:
        """File each device under the capabilities it implements; exactly one meter is required."""
        meters: list[Meter] = []
        pv: dict[str, PvInverter] = {}
        storage: dict[str, Storage] = {}
        loads: dict[str, ControllableLoad] = {}
        for dev in devices:
            matched = False
            if isinstance(dev, Meter):
                meters.append(dev)
                matched = True
            if isinstance(dev, PvInverter):
                pv[dev.id] = dev
                matched = True
            if isinstance(dev, Storage):
                storage[dev.id] = dev
                matched = True
            if isinstance(dev, ControllableLoad):
                loads[dev.id] = dev
                matched = True
            if not matched:
                raise TypeError(f"device {dev!r} offers no capability the controller knows")
        if len(meters) != 1:
            raise ValueError(f"exactly one grid meter is required, found {len(meters)}")
        return cls(meter=meters[0], pv=pv, storage=storage, loads=loads)
