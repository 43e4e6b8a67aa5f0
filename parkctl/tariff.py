"""Time-of-use tariff: which period a moment falls in and what a kWh costs then.

Defaults follow the Hunan draft in FIELD-NOTES (peak:flat:valley = 1.6:1:0.47, critical = peak x 1.2);
everything is configuration, nothing here is a constant a site cannot change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PeriodKind = Literal["critical_peak", "peak", "flat", "valley"]

DEFAULT_RATIOS: dict[str, float] = {"critical_peak": 1.92, "peak": 1.6, "flat": 1.0, "valley": 0.47}


def _minutes(hhmm: str) -> int:
    hh, _, mm = hhmm.partition(":")
    value = int(hh) * 60 + int(mm or 0)
    if not 0 <= value <= 1440 or not mm or int(mm) >= 60:
        raise ValueError(f"{hhmm!r} is not a time of day HH:MM between 00:00 and 24:00")
    return value


class TouWindow(BaseModel):
    """One window of the day, ``start`` inclusive, ``end`` exclusive (``24:00`` allowed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: str
    end: str
    kind: PeriodKind

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _minutes(v)
        return v

    @property
    def start_min(self) -> int:
        return _minutes(self.start)

    @property
    def end_min(self) -> int:
        return _minutes(self.end)


class TouSeason(BaseModel):
    """The daily windows that apply in some months; together they must cover the day exactly once."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    months: list[int] = Field(min_length=1)
    windows: list[TouWindow] = Field(min_length=1)

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[int]) -> list[int]:
        bad = [m for m in v if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"months must be 1..12, got {bad}")
        return v

    @model_validator(mode="after")
    def _covers_day(self) -> TouSeason:
        spans = sorted((w.start_min, w.end_min) for w in self.windows)
        cursor = 0
        for start, end in spans:
            if end <= start:
                raise ValueError(f"window {start // 60:02d}:{start % 60:02d} ends before it starts")
            if start != cursor:
                raise ValueError(
                    f"windows leave a gap or overlap at {cursor // 60:02d}:{cursor % 60:02d}"
                )
            cursor = end
        if cursor != 1440:
            raise ValueError("windows must cover the whole day up to 24:00")
        return self

    def kind_at_minute(self, minute_of_day: int) -> PeriodKind:
        for w in self.windows:
            if w.start_min <= minute_of_day < w.end_min:
                return w.kind
        raise AssertionError("validated seasons cover the day")  # pragma: no cover


class Tariff(BaseModel):
    """Energy prices in CNY/kWh by time-of-use period, export price, and the demand charge."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    flat_cny_per_kwh: float = Field(gt=0)
    ratios: dict[PeriodKind, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))
    seasons: list[TouSeason] = Field(min_length=1)
    export_cny_per_kwh: float = Field(default=0.0, ge=0)
    demand_charge_cny_per_kw_month: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Tariff:
        months = [m for s in self.seasons for m in s.months]
        missing = sorted(set(range(1, 13)) - set(months))
        doubled = sorted({m for m in months if months.count(m) > 1})
        if missing or doubled:
            raise ValueError(f"seasons must name each month once (missing {missing}, repeated {doubled})")
        used = {w.kind for s in self.seasons for w in s.windows}
        absent = sorted(used - set(self.ratios))
        if absent:
            raise ValueError(f"ratios has no entry for period(s) {absent}")
        return self

    def season_for(self, t: datetime) -> TouSeason:
        return next(s for s in self.seasons if t.month in s.months)

    def period_at(self, t: datetime) -> PeriodKind:
        """Period kind at a local time ``t`` (timezone-aware, in the site's zone)."""
        return self.season_for(t).kind_at_minute(t.hour * 60 + t.minute)

    def price_at(self, t: datetime) -> float:
        """Import price in CNY/kWh at ``t``."""
        return self.flat_cny_per_kwh * self.ratios[self.period_at(t)]
