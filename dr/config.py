"""Which demand-response programmes the park takes part in, and on what terms (``dr:`` in the config).

An event naming a programme that is not listed here is rejected. Acceptance is not commitment: an
accepted event is *opted in* (planned for, its cap held) only when ``auto_opt_in`` is on, the notice
was long enough for its notice type, and the park can offer at least ``min_capacity_share`` of what
is asked; otherwise the ack says "accepted" with ``optIn: false`` and the reason, and nothing changes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dr.event import Notice

BaselineMethod = Literal["five_day", "ten_in_ten", "pre_event_15min"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _default_notice() -> dict[Notice, float]:
    return {"DAY_AHEAD": 3600.0, "PRE_AGREED": 900.0, "REAL_TIME": 0.0}


class ProgrammeConfig(_Model):
    """One programme (e.g. ``hunan-peak``) of the grid company."""

    baseline: BaselineMethod = "five_day"
    threshold: float = Field(default=0.8, gt=0, le=1, description="response rate below which it does not count")
    price_cny_per_kwh: float = Field(ge=0, description="payment per kWh delivered (settlement estimate)")
    penalty_cny_per_kwh: float = Field(gt=0, description="planner's cost of a kWh of shortfall")
    min_notice_s: dict[Notice, float] = Field(
        default_factory=_default_notice,
        description="per notice type: shortest lead (start - received) the park still opts in to",
    )
    auto_opt_in: bool = Field(default=True, description="False: acknowledge only, never commit")
    min_capacity_share: float = Field(
        default=0.5, ge=0, le=1, description="opt out when the park can offer less than this share of the ask"
    )


class DrHttpConfig(_Model):
    """The grid company's read-only JSON endpoint (``/dr/events``); loopback unless deliberately opened."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9466, ge=0, le=65535, description="0: any free port")


class DrConfig(_Model):
    programmes: dict[str, ProgrammeConfig] = Field(min_length=1)
    http: DrHttpConfig = Field(default_factory=DrHttpConfig)
    mqtt_enabled: bool = Field(default=True, description="listen on park/{site}/dr/event (needs 'mqtt')")
