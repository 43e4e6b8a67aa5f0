"""Demand-response programmes and calls of a scenario (its ``demand_response`` section).

The programmes become the controller's ``dr:`` configuration, as an operator would write it;
``history_days`` of prior operation go into the controller's database first (:mod:`sim.prior_history`)
so every baseline method has the days it needs; the calls are what the simulated grid company
(:mod:`sim.grid_company`) sends during the day. Times carry a UTC offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dr.config import DrConfig, DrHttpConfig, ProgrammeConfig
from dr.event import DrEventSpec, DrInterval, IntervalKind, Notice

PayloadType = Literal["IMPORT_CAPACITY_LIMIT", "REDUCTION"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GridCall(_Model):
    """One event the grid company sends: ``values_kw`` holds one value per interval."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    programme: str
    notice: Notice = "DAY_AHEAD"
    priority: int = Field(default=1, ge=0)
    sent_at: datetime
    start: datetime
    interval_min: int = Field(default=15, ge=1, le=1440)
    type: PayloadType
    values_kw: list[float] = Field(min_length=1)
    cancel_at: datetime | None = None

    @field_validator("sent_at", "start", "cancel_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-07-15T19:00:00+08:00")
        return v

    @model_validator(mode="after")
    def _order(self) -> GridCall:
        if self.cancel_at is not None and self.cancel_at <= self.sent_at:
            raise ValueError("cancel_at must be after sent_at")
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.interval_min * len(self.values_kw))

    def spec(self, *, cancelled: bool = False, modification: int = 0, created: datetime | None = None) -> DrEventSpec:
        step = timedelta(minutes=self.interval_min)
        kind: IntervalKind = "import_cap" if self.type == "IMPORT_CAPACITY_LIMIT" else "reduction"
        intervals = tuple(DrInterval(self.start + i * step, self.start + (i + 1) * step, kind, v)
                          for i, v in enumerate(self.values_kw))  # fmt: skip
        return DrEventSpec(event_id=self.id, programme_id=self.programme, modification_number=modification,
                           priority=self.priority, notice=self.notice, created=created or self.sent_at,
                           intervals=intervals, cancelled=cancelled)  # fmt: skip


class DemandResponse(_Model):
    """The park's programmes, its prior history and the day's calls."""

    programmes: dict[str, ProgrammeConfig] = Field(min_length=1)
    history_days: int = Field(default=14, ge=0, le=60, description="simulated prior days in the database")
    history_cycle_s: float = Field(default=60.0, ge=15, le=300, description="control cycle of the prior days")
    calls: list[GridCall] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> DemandResponse:
        ids = [c.id for c in self.calls]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"call ids must be unique, repeated: {doubled}")
        return self

    def dr_config(self) -> DrConfig:
        return DrConfig(programmes=self.programmes, http=DrHttpConfig(port=0))  # any free port: runs in parallel
