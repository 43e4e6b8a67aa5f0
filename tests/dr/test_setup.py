"""The `dr:` configuration section and the controller-side assembly (manager reloaded, baseline from history)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from controller.build import make_decider
from controller.config import ControllerConfig
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store, StoreSettings
from dr.event import DrEventSpec, DrInterval
from dr.setup import build_dr
from drivers.capabilities import LoadReading, MeterReading
from parkctl.clock import SimClock

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 16, 12, 0, tzinfo=TZ)
T0 = NOW + timedelta(hours=7)


def config(**dr: Any) -> ControllerConfig:
    programme = {"price_cny_per_kwh": 1.5, "penalty_cny_per_kwh": 3.0} | dr
    return ControllerConfig.model_validate({
        "site": {"name": "zixing"}, "grid": {"import_cap_kw": 8000, "export_cap_kw": 0},
        "modbus": [{"id": "meter", "kind": "meter"}], "mqtt": {},
        "loads": [{"id": "chiller", "nominal_kw": 400, "max_shed_s": 7200}],
        "rules": {"import_margin_kw": 100},
        "dr": {"programmes": {"hunan-peak": programme}},
    })  # fmt: skip


def event(kind: str = "import_cap", value: float = 3000, event_id: str = "evt-1", at: datetime = T0) -> DrEventSpec:
    iv = DrInterval(at, at + timedelta(hours=1), kind, value)  # type: ignore[arg-type]
    return DrEventSpec(event_id, "hunan-peak", 0, 0, "DAY_AHEAD", NOW, (iv,))


def test_config_section_is_strict_and_names_the_field() -> None:
    assert config().dr is not None and config().dr.programmes["hunan-peak"].baseline == "five_day"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="threshold"):
        config(threshold=1.5)
    with pytest.raises(ValidationError, match="surprise"):
        config(surprise=1)
    with pytest.raises(ValidationError, match="baseline"):
        config(baseline="yesterday")


def test_build_dr_reloads_commitments_and_the_guard_uses_them(tmp_path: Path) -> None:
    clock = SimClock(NOW)
    path = tmp_path / "parkctl.db"
    with Store.open(path, clock, StoreSettings(checkpoint_s=None)) as store:
        registry = CollectorRegistry()
        parts = build_dr(config(), store, clock, None, registry)
        assert parts.mqtt is None and parts.observers == [parts.capacity, parts.manager, parts.ledger]
        ack = parts.manager.handle(event(), NOW)
        assert ack.opt_in and ack.capacity_kw == 400.0  # no battery reading yet: the chiller alone
        labels = {"site": "zixing", "decision": "accepted"}
        assert registry.get_sample_value("parkctl_dr_decisions_total", labels) == 1
        assert registry.get_sample_value("parkctl_dr_committed_events", {"site": "zixing"}) == 1
        assert math.isnan(registry.get_sample_value("parkctl_dr_import_cap_kw", {"site": "zixing"}) or 0.0)
        # a reduction needs a baseline; an empty history has none, so the park does not commit
        red = parts.manager.handle(event("reduction", 500, "evt-2", T0 + timedelta(hours=2)), NOW)
        assert red.status == "accepted" and not red.opt_in and "no baseline" in red.reason
    with Store.open(path, SimClock(T0), StoreSettings(checkpoint_s=None)) as store:
        parts = build_dr(config(), store, SimClock(T0), None)
        assert parts.manager.records["evt-1"].state == "active"  # ticked at build time
        decide = make_decider(config(), None, parts.manager.import_cap_at)
        ts = T0 + timedelta(minutes=5)
        snap = Snapshot(ts=ts, meter=MeterReading(ts, 3200.0), loads={"chiller": LoadReading(ts, 400, True)})
        out = decide(snap, Setpoints(load_shed={"chiller": False}))
        assert out.load_shed == {"chiller": True}  # 3200 > 3000 - 100: the chiller goes
