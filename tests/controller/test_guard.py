"""The write guard: whatever the decide phase asks, drivers only get allowed kinds within the clamps."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ControllerConfig
from controller.cycle import CycleSettings
from controller.devices import DeviceSet
from controller.guard import DevicePolicy, WriteGuard, WriteKind
from controller.setpoints import Setpoints
from controller.writer import SetpointWriter, WriteRecord
from drivers.capabilities import CommandOutcome, LoadReading
from parkctl.clock import SimClock

T0 = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
IDS = ("a", "b", "c")


class Recorder:
    """A device double offering every write capability, so only the guard can keep a kind away."""

    def __init__(self, id: str, calls: list[tuple[str, WriteKind, float | bool | None]]) -> None:
        self.id, self.calls = id, calls

    async def read_pv(self) -> object: ...
    async def read_battery(self) -> object: ...

    def latest_load(self) -> LoadReading | None:
        return None

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        self.calls.append((self.id, "pv_limit", limit_kw))

    async def set_battery_power(self, p_kw: float) -> None:
        self.calls.append((self.id, "battery_power", p_kw))

    async def shed(self) -> CommandOutcome:
        self.calls.append((self.id, "load_shed", True))
        return CommandOutcome(acked=True, accepted=True)

    async def restore(self) -> CommandOutcome:
        self.calls.append((self.id, "load_shed", False))
        return CommandOutcome(acked=True, accepted=True)


Call = tuple[str, WriteKind, float | bool | None]


def run(
    policies: dict[str, DevicePolicy] | None, plan: list[Setpoints]
) -> tuple[list[Call], list[WriteRecord], SetpointWriter]:
    calls: list[Call] = []
    rec = {i: Recorder(i, calls) for i in IDS}
    devices = DeviceSet(pv=dict(rec), storage=dict(rec), loads=dict(rec))  # type: ignore[arg-type]
    writer = SetpointWriter(devices, SimClock(T0), CycleSettings(deadband_kw=0), Counter(), WriteGuard(policies))
    records: list[WriteRecord] = []

    async def go() -> None:
        for sp in plan:
            records.extend(await writer.write(sp, []))

    asyncio.run(go())
    return calls, records, writer


kinds = st.frozensets(st.sampled_from(("pv_limit", "battery_power", "load_shed")))
limits = st.floats(0, 5000) | st.just(math.inf)
policy = st.builds(DevicePolicy, writes=kinds, min_pv_limit_kw=st.floats(0, 1000), max_charge_kw=limits,
                   max_discharge_kw=limits)  # fmt: skip
any_float = st.floats(allow_nan=True, allow_infinity=True)
dev = st.sampled_from((*IDS, "ghost"))
setpoints = st.builds(
    Setpoints,
    pv_limit_kw=st.dictionaries(dev, st.none() | any_float, max_size=4),
    battery_p_kw=st.dictionaries(dev, any_float, max_size=4),
    load_shed=st.dictionaries(dev, st.booleans(), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(IDS), policy), st.lists(setpoints, min_size=1, max_size=6))
def test_driver_calls_stay_within_allow_list_and_clamps(
    policies: dict[str, DevicePolicy], plan: list[Setpoints]
) -> None:
    calls, records, writer = run(policies, plan)
    for device, kind, value in calls:
        p = policies[device]  # a device without a policy is never written
        if kind == "load_shed":
            assert value is False or "load_shed" in p.writes  # restoring is always allowed
            continue
        assert kind in p.writes
        if kind == "pv_limit":
            assert value is None or (isinstance(value, float) and math.isfinite(value) and value >= p.min_pv_limit_kw)
        else:
            assert isinstance(value, float) and math.isfinite(value)
            assert -p.max_charge_kw <= value <= p.max_discharge_kw
    for r in records:
        assert r.ok == (r.reason == ""), r  # a refusal is a failed write with its reason
    assert sum(not r.ok for r in records) == writer.guard.refusals.total()


def test_clamped_setpoints_are_written_once_and_refusals_reported_once() -> None:
    policies = {
        "a": DevicePolicy(frozenset({"battery_power"}), max_charge_kw=200, max_discharge_kw=300),
        "b": DevicePolicy(frozenset({"pv_limit"}), min_pv_limit_kw=50),
        "c": DevicePolicy(frozenset()),  # read-only, and may not be shed
    }
    ask = Setpoints(pv_limit_kw={"b": 0.0}, battery_p_kw={"a": 5000.0, "c": 10.0}, load_shed={"c": True})
    calls, records, writer = run(policies, [ask, ask, Setpoints(battery_p_kw={"a": -5000.0})])
    assert calls == [("b", "pv_limit", 50.0), ("a", "battery_power", 300.0), ("a", "battery_power", -200.0)]
    refused = [(r.device, r.kind) for r in records if not r.ok]
    assert refused == [("c", "battery_p_kw"), ("c", "load_shed")]  # once, not every cycle
    assert writer.commanded.battery_p_kw["a"] == -200.0 and writer.guard.clamped["a"] == 3


def test_policies_from_the_configuration() -> None:
    config = ControllerConfig.model_validate({
        "site": {"name": "s"},
        "grid": {"import_cap_kw": 1000, "export_cap_kw": 0},
        "modbus": [
            {"id": "m", "kind": "meter"},
            {"id": "pv", "kind": "pv", "rated_kw": 200, "min_pv_limit_pct": 10},
            {"id": "pv-ro", "kind": "pv", "rated_kw": 200, "writes": []},
            {"id": "bess", "kind": "storage", "max_charge_kw": 100, "max_discharge_kw": 150},
        ],
        "mqtt": {"url": "mqtt://h"},
        "loads": [{"id": "keep-on", "nominal_kw": 10, "allow_shed": False}, {"id": "chiller", "nominal_kw": 10}],
    })  # fmt: skip
    ask = Setpoints(pv_limit_kw={"pv": 0.0, "pv-ro": 0.0}, battery_p_kw={"bess": -900.0, "m": 5.0},
                    load_shed={"keep-on": True, "chiller": True})  # fmt: skip
    allowed, refused = WriteGuard.from_config(config).filter(ask)
    assert allowed.pv_limit_kw == {"pv": 20.0} and allowed.battery_p_kw == {"bess": -100.0}
    assert allowed.load_shed == {"chiller": True}
    assert sorted(r.device for r in refused) == ["keep-on", "m", "pv-ro"]
