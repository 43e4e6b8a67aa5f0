"""Scenario files: a simulated park described as data (``sim/scenarios/NAME.yaml``).

A scenario names the site, the day, the devices and their physics, the tariff and the grid
connection. Loading one validates every field; a wrong file raises :class:`ConfigError` whose
message names the field and the reason, in one line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkctl.errors import ConfigError
from parkctl.tariff import Tariff
from parkctl.timezone import TimezoneName
from parkctl.yamlfile import parse_yaml_model
from sim.dr_calls import DemandResponse
from sim.faults import Fault, check_faults


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Site(_Model):
    name: str
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    altitude_m: float = 0.0
    timezone: TimezoneName

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Grid(_Model):
    """Point of connection. ``export_cap_kw = 0`` is the zero-export rule."""

    voltage_kv: float = Field(gt=0)
    import_cap_kw: float = Field(gt=0)
    export_cap_kw: float = Field(ge=0)
    carbon_kg_per_kwh: float = Field(default=0.5366, ge=0)
    violation_tolerance_kw: float = Field(
        default=1.0, ge=0, description="meter resolution: excursions within this are not violations"
    )
    frequency_hz: float = Field(default=50.0, gt=0, description="nominal frequency the meter reports")


class Weather(_Model):
    """Clear-sky irradiance times a seeded cloud process."""

    cloudiness: float = Field(default=0.2, ge=0, le=1, description="0 clear, 1 overcast")
    cloud_timescale_min: float = Field(default=20.0, gt=0)
    linke_turbidity: float = Field(default=4.0, gt=0)
    ambient_mean_c: float | None = Field(
        default=None, description="daily mean air temperature; None: a subtropical seasonal default"
    )
    ambient_range_c: float = Field(default=8.0, ge=0, description="daily min-to-max swing, peak at 15:00")


class ForecastError(_Model):
    """Seeded forecast error of the simulated forecaster (see ``sim.forecast``).

    Relative 1-sigma errors at the day-ahead lead and at the present; in between the error grows with
    the square root of the lead time, so forecasts sharpen toward the present like real ones do.
    """

    pv_sigma_day_ahead: float = Field(default=0.25, ge=0, le=2)
    pv_sigma_now: float = Field(default=0.03, ge=0, le=2)
    load_sigma_day_ahead: float = Field(default=0.06, ge=0, le=1)
    load_sigma_now: float = Field(default=0.01, ge=0, le=1)
    day_ahead_h: float = Field(default=24.0, gt=0, description="lead at which errors reach day-ahead size")
    correlation_min: float = Field(default=90.0, gt=0, description="how long an error persists along the day")


class PvPlant(_Model):
    id: str
    dc_kwp: float = Field(gt=0)
    ac_kw: float = Field(gt=0, description="inverter AC rating; output is capped here")
    tilt_deg: float = Field(default=15.0, ge=0, le=90)
    azimuth_deg: float = Field(default=180.0, ge=0, lt=360)
    losses_pct: float = Field(default=14.0, ge=0, lt=100)
    ramp_pct_per_s: float = Field(default=10.0, gt=0, description="limit-following ramp, % of ac_kw per s")
    temp_coeff_pct_per_c: float = Field(default=-0.4, le=0, description="power change per °C above 25 °C")
    noct_c: float = Field(default=45.0, ge=20, le=80, description="cell temperature at 800 W/m², 20 °C")


class Battery(_Model):
    id: str
    capacity_kwh: float = Field(gt=0)
    p_charge_max_kw: float = Field(gt=0)
    p_discharge_max_kw: float = Field(gt=0)
    eta_charge: float = Field(default=0.95, gt=0, le=1)
    eta_discharge: float = Field(default=0.95, gt=0, le=1)
    soc_init_pct: float = Field(default=50.0, ge=0, le=100)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)
    derate_band_pct: float = Field(
        default=5.0, ge=0, le=50, description="power tapers linearly within this band of empty/full"
    )
    ramp_kw_per_s: float = Field(default=500.0, gt=0)
    watchdog_s: float = Field(default=60.0, gt=0, description="idle if no fresh setpoint within this time")
    degradation_cny_per_kwh: float = Field(default=0.05, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Battery:
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError("soc_min_pct must be below soc_max_pct")
        if not self.soc_min_pct <= self.soc_init_pct <= self.soc_max_pct:
            raise ValueError("soc_init_pct must lie within soc_min_pct..soc_max_pct")
        return self


class Shift(_Model):
    """A production shift: the load sits at ``level`` (share of peak) from ``start`` to ``end``."""

    start: str
    end: str
    level: float = Field(ge=0, le=1)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, sep, mm = v.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2):
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        if int(mm) >= 60 or not 0 <= int(hh) * 60 + int(mm) <= 1440:
            raise ValueError(f"{v!r} is not a time of day between 00:00 and 24:00")
        return v


class BaseLoad(_Model):
    peak_kw: float = Field(gt=0)
    night_level: float = Field(default=0.35, ge=0, le=1, description="share of peak outside shifts")
    shifts: list[Shift] = Field(default_factory=list)
    weekend_factor: float = Field(default=0.6, ge=0, le=1)
    ramp_min: float = Field(default=20.0, ge=0, description="shift changes ramp over this many minutes")
    noise_pct: float = Field(default=2.0, ge=0, le=50, description="1-sigma of the slow noise")


class InterruptibleLoad(_Model):
    id: str
    kind: str = Field(description="chiller, air_compressor, induction_furnace, ...")
    p_kw: float = Field(gt=0, description="power drawn while running")
    duty_noise_pct: float = Field(default=3.0, ge=0, le=50)
    min_on_s: float = Field(default=600.0, ge=0)
    min_off_s: float = Field(default=300.0, ge=0)
    max_shed_s: float = Field(default=3600.0, gt=0)
    max_sheds_per_day: int = Field(default=4, ge=0)
    rebound_factor: float = Field(
        default=0.3, ge=0, le=2, description="energy drawn back after a shed, share of the energy shed"
    )
    rebound_s: float = Field(default=1800.0, gt=0, description="the rebound is spread over this time")
    shed_cost_cny_per_kwh: float = Field(default=0.3, ge=0)


class Scenario(_Model):
    name: str
    description: str = ""
    site: Site
    start: datetime
    seed: int = 0
    physics_step_s: float = Field(default=1.0, gt=0, le=60)
    control_cycle_s: float = Field(default=15.0, gt=0, le=900)
    grid: Grid
    tariff: Tariff
    weather: Weather = Weather()
    forecast_error: ForecastError = ForecastError()
    pv: list[PvPlant] = Field(default_factory=list)
    batteries: list[Battery] = Field(default_factory=list)
    base_load: BaseLoad
    interruptible_loads: list[InterruptibleLoad] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list, description="fault schedule (sim.faults)")
    demand_response: DemandResponse | None = Field(default=None, description="programmes and calls (sim.dr_calls)")

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start must carry a UTC offset, e.g. 2026-07-15T00:00:00+08:00")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Scenario:
        ids = [p.id for p in self.pv] + [b.id for b in self.batteries]
        ids += [ld.id for ld in self.interruptible_loads]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"device ids must be unique, repeated: {doubled}")
        unknown = sorted({c.programme for c in self.demand_response.calls} - set(self.demand_response.programmes)
                         ) if self.demand_response else []  # fmt: skip
        if unknown:
            raise ValueError(f"demand_response.calls name programmes that are not listed: {unknown}")
        check_faults(self.faults, [p.id for p in self.pv] + [b.id for b in self.batteries],
                     [ld.id for ld in self.interruptible_loads])  # fmt: skip
        return self

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(self.site.tz)

    def end_after(self, hours: float) -> datetime:
        return self.local_start + timedelta(hours=hours)


SCENARIO_DIR = "scenarios"


def available_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("sim") / SCENARIO_DIR
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def parse_scenario(text: str, source: str) -> Scenario:
    """Validate scenario YAML text; ``source`` names it in error messages."""
    return parse_yaml_model(text, Scenario, source)


def load_scenario(name_or_path: str) -> Scenario:
    """Load a shipped scenario by name, or any scenario file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file {str(path)!r} does not exist")
        return parse_scenario(path.read_text(encoding="utf-8"), str(path))
    res = resources.files("sim") / SCENARIO_DIR / f"{name_or_path}.yaml"
    if not res.is_file():
        known = ", ".join(available_scenarios())
        raise ConfigError(f"unknown scenario {name_or_path!r}; known scenarios: {known}")
    return parse_scenario(res.read_text(encoding="utf-8"), f"scenario {name_or_path!r}")
