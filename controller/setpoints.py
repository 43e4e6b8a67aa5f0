"""What the decide phase asks of the devices for the next cycle."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Setpoints:
    """Per-device commands. Devices absent from a mapping are left as they are.

    ``pv_limit_kw``: AC cap per plant, ``None`` lifts the cap. ``battery_p_kw``: + discharge / - charge.
    ``load_shed``: True to shed an interruptible load, False to run it.
    """

    pv_limit_kw: dict[str, float | None] = field(default_factory=dict)
    battery_p_kw: dict[str, float] = field(default_factory=dict)
    load_shed: dict[str, bool] = field(default_factory=dict)
    reason: str = ""

    @property
    def battery_total_kw(self) -> float:
        return sum(self.battery_p_kw.values())
