"""The controller's configuration file, as pydantic models.

The same model describes a real park (``parkctl run --config FILE``) and the simulated one (the
simulator builds it from the scenario and the endpoints it started), so both run identical code.
A wrong file raises :class:`ConfigError` naming the field and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from controller.cycle import CycleSettings
from controller.rules import LoadReturn, SiteModel
from controller.settings import BatteryLimits, GridLimits, RuleSettings
from dr.config import DrConfig
from drivers.mqtt_url import parse_mqtt_url
from parkctl.errors import ConfigError
from parkctl.tariff import Tariff
from parkctl.timezone import TimezoneName
from parkctl.yamlfile import parse_yaml_model


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="also the MQTT topic segment")
    timezone: TimezoneName = "Asia/Shanghai"


class ModbusDeviceConfig(_Model):
    """A SunSpec device reached over Modbus TCP."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["pv", "storage", "meter"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    timeout_s: float = Field(default=0.3, gt=0, le=10)
    retries: int = Field(default=1, ge=0, le=5)
    rated_kw: float | None = Field(default=None, gt=0, description="AC nameplate; required for PV")
    writes: list[Literal["pv_limit", "battery_power"]] | None = Field(
        default=None, description="setpoints the controller may write; None: pv_limit for pv, battery_power "
        "for storage, nothing for a meter; [] makes the device read-only")  # fmt: skip
    min_pv_limit_pct: float = Field(default=0.0, ge=0, le=100, description="PV caps never below this % of rated_kw")
    max_charge_kw: float | None = Field(default=None, ge=0, description="battery setpoints clamped to this")
    max_discharge_kw: float | None = Field(default=None, ge=0, description="battery setpoints clamped to this")

    @model_validator(mode="after")
    def _writes_fit_kind(self) -> ModbusDeviceConfig:
        own = {"pv": {"pv_limit"}, "storage": {"battery_power"}, "meter": set()}[self.kind]
        foreign = sorted(set(self.writes or ()) - own)
        if foreign:
            raise ValueError(f"writes: a {self.kind} device cannot take {foreign}")
        if self.kind != "storage" and (self.max_charge_kw is not None or self.max_discharge_kw is not None):
            raise ValueError("max_charge_kw/max_discharge_kw apply to storage devices only")
        if self.kind != "pv" and self.min_pv_limit_pct:
            raise ValueError("min_pv_limit_pct applies to pv devices only")
        return self

    def allowed_writes(self) -> frozenset[Literal["pv_limit", "battery_power"]]:
        if self.writes is not None:
            return frozenset(self.writes)
        if self.kind == "pv":
            return frozenset({"pv_limit"})
        return frozenset({"battery_power"}) if self.kind == "storage" else frozenset()


class MqttTlsConfig(_Model):
    """TLS to the broker (``mqtts://``); the broker certificate is always verified."""

    ca_file: str | None = Field(default=None, description="PEM CA of the broker certificate; None: system store")
    cert_file: str | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    key_file: str | None = Field(default=None, description="its private key (PEM), for mutual TLS")
    check_hostname: bool = Field(default=True, description="the certificate must name the URL's host")

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self


class MqttConfig(_Model):
    """The broker. Secrets never sit here in clear: the password comes from a file or the environment."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "parkctl-controller"
    ack_timeout_s: float = Field(default=1.0, gt=0, le=30)
    max_age_s: float = Field(default=30.0, gt=0, description="older load reports count as stale")
    username: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, description="file whose first line is the password")
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="environment variable holding the password")  # fmt: skip
    password: None = Field(default=None, description="refused: use password_file or password_env")
    tls: MqttTlsConfig | None = Field(default=None, description="needs an mqtts:// url")

    @field_validator("password", mode="before")
    @classmethod
    def _no_clear_password(cls, v: object) -> None:
        if v is not None:  # PydanticCustomError: the message without pydantic's "Value error, " prefix
            raise PydanticCustomError("clear_password", "a clear-text password is not accepted: use password_file "
                                      "or password_env")  # fmt: skip
        return None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            url = parse_mqtt_url(v)
        except ConfigError as exc:
            raise PydanticCustomError("mqtt_url", "{why}", {"why": str(exc).removeprefix("--mqtt-url ")}) from None
        if url.password is not None:
            raise PydanticCustomError("url_password", "no password in the url: use mqtt.password_file or "
                                      "mqtt.password_env")  # fmt: skip
        return v

    @model_validator(mode="after")
    def _auth(self) -> MqttConfig:
        url = parse_mqtt_url(self.url)
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if url.username and self.username and url.username != self.username:
            raise ValueError(f"username {self.username!r} differs from the url's {url.username!r}")
        if (self.password_file or self.password_env) and not (self.username or url.username):
            raise ValueError("a password needs a username (mqtt.username)")
        if self.tls is not None and not url.tls:
            raise ValueError("mqtt.tls is set but the url is mqtt://: use mqtts://host[:8883]")
        return self


class LoadConfig(_Model):
    """An interruptible load reached over MQTT, with what the planner may ask of it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    nominal_kw: float = Field(gt=0)
    max_shed_s: float = Field(default=3600.0, gt=0)
    min_shed_s: float = Field(default=0.0, ge=0, description="once shed, it stays off at least this long")
    min_gap_s: float = Field(default=600.0, ge=0, description="minimum run time between two sheds")
    max_sheds_per_day: int = Field(default=4, ge=0)
    rebound_factor: float = Field(default=0.3, ge=0, le=2, description="energy drawn back, share of the shed")
    rebound_s: float = Field(default=1800.0, gt=0)
    shed_cost_cny_per_kwh: float = Field(default=0.3, ge=0)
    allow_shed: bool = Field(default=True, description="False: the controller never sheds it (restore is allowed)")


class BatterySpec(_Model):
    """Nameplate and economics of a battery, for planning."""

    capacity_kwh: float = Field(gt=0)
    p_charge_max_kw: float = Field(gt=0)
    p_discharge_max_kw: float = Field(gt=0)
    eta_charge: float = Field(default=0.95, gt=0, le=1)
    eta_discharge: float = Field(default=0.95, gt=0, le=1)
    degradation_cny_per_kwh: float = Field(default=0.05, ge=0)


class PlannerConfig(_Model):
    """Rolling-horizon planning (strategy ``mpc``)."""

    step_s: int = Field(default=900, ge=300, le=3600)
    horizon_h: float = Field(default=24.0, gt=0, le=48)
    replan_s: float = Field(default=900.0, ge=60)
    time_limit_s: float = Field(default=20.0, gt=0, le=600)
    mip_rel_gap: float = Field(default=0.005, ge=0, le=0.2)
    mip_search_s: float | None = Field(
        default=0.0, ge=0, le=600, description="MIP search per re-plan once a heuristic plan is in hand (0: none)"
    )
    green_rel_tol: float = Field(
        default=0.005, ge=0, le=0.1, description="share of available PV the cost stage may give up (optimizer)"
    )
    deviation_kw: float = Field(default=800.0, gt=0, description="re-plan when the grid strays this far")
    deviation_s: float = Field(default=120.0, gt=0, description="... for this long")
    tariff: Tariff
    carbon_kg_per_kwh: float = Field(default=0.5366, ge=0)
    battery_specs: dict[str, BatterySpec] = Field(default_factory=dict)


class StorageConfig(_Model):
    path: str = Field(default="parkctl.db", description="SQLite file; ':memory:' keeps nothing")
    cycle_every: int = Field(default=1, ge=1, le=3600, description="one history row per this many cycles")


class MetricsConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class TelemetryConfig(_Model):
    enabled: bool = True
    every_s: float = Field(default=10.0, gt=0, description="measurements topic period")


class ControllerConfig(_Model):
    site: SiteConfig
    grid: GridLimits
    batteries: dict[str, BatteryLimits] = Field(default_factory=dict)
    cycle: CycleSettings = Field(default_factory=CycleSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    strategy: Literal["rules", "mpc"] = "rules"
    modbus: list[ModbusDeviceConfig] = Field(default_factory=list)
    mqtt: MqttConfig | None = None
    loads: list[LoadConfig] = Field(default_factory=list)
    planner: PlannerConfig | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    dr: DrConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ControllerConfig:
        ids = [d.id for d in self.modbus] + [ld.id for ld in self.loads]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"device ids must be unique, repeated: {doubled}")
        meters = [d.id for d in self.modbus if d.kind == "meter"]
        if len(meters) != 1:
            raise ValueError(f"exactly one device of kind 'meter' is required, found {len(meters)}")
        unrated = [d.id for d in self.modbus if d.kind == "pv" and d.rated_kw is None]
        if unrated:
            raise ValueError(f"PV devices need rated_kw: {unrated}")
        storage = {d.id for d in self.modbus if d.kind == "storage"}
        unknown = sorted(set(self.batteries) - storage)
        if unknown:
            raise ValueError(f"batteries names ids that are not storage devices: {unknown}")
        if self.loads and self.mqtt is None:
            raise ValueError("loads are reached over MQTT: an 'mqtt' section is required")
        if self.strategy == "mpc":
            if self.planner is None:
                raise ValueError("strategy 'mpc' needs a 'planner' section (tariff, battery_specs)")
            unspecified = sorted(storage - set(self.planner.battery_specs))
            if unspecified:
                raise ValueError(f"planner.battery_specs is missing storage devices {unspecified}")
        return self

    def battery_limits(self) -> dict[str, BatteryLimits]:
        return {
            d.id: self.batteries.get(d.id, BatteryLimits()) for d in self.modbus if d.kind == "storage"
        }

    def site_model(self) -> SiteModel:
        return SiteModel(
            grid=self.grid,
            batteries=self.battery_limits(),
            pv_rated_kw={d.id: float(d.rated_kw or 0) for d in self.modbus if d.kind == "pv"},
            load_nominal_kw={ld.id: ld.nominal_kw for ld in self.loads},
            rules=self.rules,
            cycle_s=self.cycle.period_s,
            load_return={ld.id: LoadReturn(ld.max_shed_s, ld.rebound_factor, ld.rebound_s) for ld in self.loads},
        )


def load_config(path: str | Path) -> ControllerConfig:
    """Read and validate a YAML configuration file; ``${NAME}`` in strings comes from the environment."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file {str(p)!r} does not exist")
    return parse_yaml_model(p.read_text(encoding="utf-8"), ControllerConfig, str(p), env=os.environ)
