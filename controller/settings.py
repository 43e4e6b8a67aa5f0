"""Controller-side limits and tuning, as pydantic models (loaded from the site configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GridLimits(_Model):
    """Limits at the point of connection. ``export_cap_kw = 0`` is the zero-export rule."""

    import_cap_kw: float = Field(gt=0)
    export_cap_kw: float = Field(ge=0)


class BatteryLimits(_Model):
    """The controller's own SoC window for a battery; may be tighter than the device's."""

    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> BatteryLimits:
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError("soc_min_pct must be below soc_max_pct")
        return self


class RuleSettings(_Model):
    """Tuning of the rule-based self-consumption dispatch and of the guards."""

    target_import_kw: float = Field(
        default=100.0, ge=0, description="import the battery steers toward, so noise does not export"
    )
    export_margin_kw: float = Field(
        default=50.0, ge=0, description="PV caps keep the grid at least this far inside the export cap"
    )
    import_margin_kw: float = Field(
        default=150.0, ge=0, description="loads are shed when import comes this close to the cap"
    )
    restore_headroom_kw: float = Field(
        default=300.0, ge=0, description="extra headroom below the cap before a shed load is restored"
    )
    pv_probe_pct: float = Field(
        default=5.0, ge=0, le=100, description="per cycle, % of PV rating a capped fleet may rise by"
    )
    pv_drop_pct_per_min: float = Field(
        default=40.0, ge=0, le=1000,
        description="PV fall (% of output per minute, a passing cloud) that charging from the grid leaves room "
        "for under the import cap until the next cycle",
    )
    load_drop_pct_per_min: float = Field(
        default=2.0, ge=0, le=100,
        description="load fall (% per minute) that PV caps leave room for inside the export cap until the next "
        "cycle, while no battery discharges (a discharging battery already keeps the grid at target_import_kw)",
    )
    blind_pv_limit_kw: float = Field(
        default=0.0, ge=0, description="PV cap for the whole fleet while the meter cannot be read"
    )

    @model_validator(mode="after")
    def _target_above_margin(self) -> RuleSettings:
        if self.target_import_kw <= self.export_margin_kw:
            raise ValueError(
                "target_import_kw must exceed export_margin_kw, or PV caps would sit below PV output"
            )
        return self
