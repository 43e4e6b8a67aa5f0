"""Alarms: the pure rules step by step, then the monitor's effects (store rows, MQTT payloads, metrics)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from controller.alarms import AlarmMonitor, AlarmRules, Observation, observe
from controller.cycle import CycleReport
from controller.forecast import Forecast
from controller.forecast_check import CheckedForecaster, forecast_problems
from controller.meter_guard import FrozenMeterGuard, MeterFrozen
from controller.setpoints import Setpoints
from controller.snapshot import Snapshot
from controller.store import Store
from controller.writer import WriteRecord
from drivers.capabilities import BatteryReading, LoadReading, MeterReading, PvReading

T0 = datetime(2026, 7, 15, 3, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
DEVICES = frozenset({"meter", "pv", "bat", "chiller"})


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=15 * i)


def obs(i: int, **kw: Any) -> Observation:
    return Observation(ts=at(i), devices=DEVICES, **kw)


def test_a_failing_read_raises_after_two_cycles_and_clears_on_the_first_good_one() -> None:
    rules = AlarmRules(raise_after=2)
    failing = {"read_failed": frozenset({"bat"}), "stale": frozenset({"bat"})}
    assert not rules.step(obs(0, **failing)).raised  # one miss is noise
    assert rules.step(obs(1, **failing)).raised == {("device_read_failed", "bat"): "read failed"}
    assert not rules.step(obs(2, **failing)).raised  # raised once, not every cycle
    assert rules.step(obs(3)).cleared == {("device_read_failed", "bat")}
    assert rules.active == set()


def test_a_single_miss_between_good_reads_raises_nothing() -> None:
    rules = AlarmRules(raise_after=2)
    for i in range(6):
        bad = i % 2 == 0
        ch = rules.step(obs(i, read_failed=frozenset({"pv"} if bad else ()), stale=frozenset({"pv"} if bad else ())))
        assert not ch.raised and not ch.cleared


def test_a_silent_load_is_stale_not_failed() -> None:
    rules = AlarmRules(raise_after=2)
    rules.step(obs(0, stale=frozenset({"chiller"})))
    assert rules.step(obs(1, stale=frozenset({"chiller"}))).raised.keys() == {("device_stale", "chiller")}
    assert rules.step(obs(2)).cleared == {("device_stale", "chiller")}


def test_a_frozen_meter_is_its_own_alarm_and_not_a_read_failure() -> None:
    rules = AlarmRules(raise_after=2)
    frozen = {"read_failed": frozenset({"meter"}), "stale": frozenset({"meter"}), "frozen": frozenset({"meter"})}
    assert rules.step(obs(0, **frozen)).raised.keys() == {("meter_stale", "meter")}
    assert rules.step(obs(1, **frozen)).raised == {}
    assert rules.step(obs(2)).cleared == {("meter_stale", "meter")}


def test_no_ack_clears_only_on_an_acknowledged_command() -> None:
    rules = AlarmRules()
    assert rules.step(obs(0, no_ack=frozenset({"chiller"}))).raised.keys() == {("load_no_ack", "chiller")}
    assert not rules.step(obs(1)).cleared  # no command, no evidence either way
    assert rules.step(obs(2, acked=frozenset({"chiller"}))).cleared == {("load_no_ack", "chiller")}


def test_payload_errors_clear_after_a_quiet_minute() -> None:
    rules = AlarmRules(quiet_s=60)
    assert rules.step(obs(0, payload_errors=3)).raised.keys() == {("mqtt_payload_invalid", "")}
    assert not rules.step(obs(3)).cleared  # 45 s quiet
    assert rules.step(obs(4)).cleared == {("mqtt_payload_invalid", "")}


def test_broker_and_restart_alarms() -> None:
    rules = AlarmRules(raise_after=2, active=[("controller_restarted", "")])
    assert not rules.step(obs(0, broker_connected=False, complete=False)).cleared
    ch = rules.step(obs(1, broker_connected=False, complete=True))
    assert ch.raised.keys() == {("broker_disconnected", "")} and ch.cleared == {("controller_restarted", "")}
    assert rules.step(obs(2, broker_connected=True)).cleared == {("broker_disconnected", "")}


def test_an_alarm_taken_over_from_the_store_clears_on_good_evidence_without_a_new_raise() -> None:
    rules = AlarmRules(raise_after=2, active=[("device_read_failed", "bat")])
    ch = rules.step(obs(0, read_failed=frozenset({"bat"}), stale=frozenset({"bat"})))
    assert ch.raised == {} and ch.cleared == frozenset()  # still failing: still active, not raised again
    assert rules.step(obs(1)).cleared == {("device_read_failed", "bat")}


def report(i: int, *, meter: bool = True, errors: tuple[str, ...] = (), writes: tuple[WriteRecord, ...] = ()
           ) -> CycleReport:  # fmt: skip
    ts = at(i)
    snap = Snapshot(ts, MeterReading(ts, 100.0) if meter else None, pv={"pv": PvReading(ts, 10.0, 100.0, None)},
                    batteries={"bat": BatteryReading(ts, 0.0, 50.0, 100.0, 50.0, 50.0)},
                    loads={"chiller": LoadReading(ts, 300.0, True, True)})  # fmt: skip
    return CycleReport(ts, snap, Setpoints({}, {}, {}), writes, errors, {}, 0.0, False)


def test_observe_reads_errors_and_writes_of_a_cycle() -> None:
    shed = WriteRecord(at(0), "chiller", "load_shed", True, False)
    r = report(0, meter=False, errors=("read meter: DeviceError('x')", "command chiller: no acknowledgement"),
               writes=(shed,))  # fmt: skip
    o = observe(r, "meter", frozen=False, payload_errors=0, broker_connected=True)
    assert o.read_failed == {"meter"} and o.stale == {"meter"} and o.no_ack == {"chiller"} and not o.acked
    assert o.devices == {"meter", "pv", "bat", "chiller"}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t


def test_the_monitor_stores_publishes_and_counts(tmp_path: Any) -> None:
    clock, sent = Clock(), []
    registry = CollectorRegistry()
    with Store.open(tmp_path / "c.db", clock) as store:
        mon = AlarmMonitor(store, registry, "site", publish=lambda kind, p: sent.append((kind, dict(p))))
        mon.start()
        for i in range(2):
            clock.t = at(i)
            mon.on_cycle(report(i, meter=False, errors=("read meter: DeviceError('x')",)))
        clock.t = at(2)
        mon.on_cycle(report(2))
        mon.on_plan("infeasible", fallback_active=True)
        mon.close()
        rows = [(a.code, a.device) for a in store.active_alarms()]
    assert rows == [("plan_fallback", "")]
    assert [(k, p["state"], p["code"]) for k, p in sent] == [
        ("alarm", "raised", "device_read_failed"), ("alarm", "cleared", "device_read_failed"),
        ("alarm", "raised", "plan_fallback")]  # fmt: skip
    value = registry.get_sample_value
    assert value("parkctl_alarms_raised_total", {"site": "site", "code": "device_read_failed"}) == 1
    assert value("parkctl_alarm_active", {"site": "site", "code": "device_read_failed", "device": "meter"}) == 0
    assert value("parkctl_alarm_active", {"site": "site", "code": "plan_fallback", "device": ""}) == 1


def test_a_start_after_a_crash_raises_controller_restarted_and_takes_over_active_alarms(tmp_path: Any) -> None:
    clock = Clock()
    with Store.open(tmp_path / "c.db", clock) as store:
        first = AlarmMonitor(store, CollectorRegistry(), "site")
        first.start()
        first.on_plan("failed", fallback_active=True)
        first.abandon()  # killed: no close()
        second = AlarmMonitor(store, CollectorRegistry(), "site")
        second.start()
        assert second.rules.active == {("plan_fallback", ""), ("controller_restarted", "")}
        second.on_cycle(report(1))  # a complete process image: the restart is over
        second.on_plan("optimal", fallback_active=False)
        assert store.active_alarms() == []
        second.close()
        third = AlarmMonitor(store, CollectorRegistry(), "site")
        third.start()  # after a clean stop: no restart alarm
        assert third.rules.active == set()


async def test_the_meter_guard_refuses_a_frozen_meter_until_it_moves() -> None:
    values = [100.0] * 5 + [101.0]

    class Frozen:
        id = "meter"

        async def read_meter(self) -> MeterReading:
            return MeterReading(T0, values.pop(0), 10.0, 0.0)

    guard = FrozenMeterGuard(Frozen(), frozen_reads=4)
    for _ in range(3):
        await guard.read_meter()
    for _ in range(2):
        try:
            await guard.read_meter()
        except MeterFrozen:
            pass
        else:
            raise AssertionError("a meter frozen for 4 reads must be refused")
    assert (await guard.read_meter()).p_kw == 101.0 and not guard.frozen


def test_the_forecast_check_repairs_nan_and_missing_steps_and_says_so() -> None:
    nan = float("nan")
    fc = Forecast(T0, T0, 900, {"pv": [0.0, nan, 20.0]}, [100.0, 200.0], {})  # type: ignore[dict-item,arg-type]
    assert forecast_problems(fc, 3) == ["load_kw: 2 of 3 steps", "pv_kw[pv]: 1 non-finite steps"]
    seen: list[str | None] = []

    class Source:
        def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
            return fc

    out = CheckedForecaster(Source(), seen.append).forecast(T0, T0, 3, 900)
    assert list(out.pv_kw["pv"]) == [0.0, 10.0, 20.0] and list(out.load_kw) == [100.0, 200.0, 200.0]
    assert seen == ["load_kw: 2 of 3 steps; pv_kw[pv]: 1 non-finite steps"]


async def test_a_silent_load_is_probed_and_its_alarm_cleared_once_it_answers(tmp_path: Any) -> None:
    from controller.ack_probe import AckProbe
    from drivers.capabilities import CommandOutcome

    answers = [False, True]

    class Load:
        id = "chiller"

        def latest_load(self) -> LoadReading | None:
            return None

        async def shed(self) -> CommandOutcome:
            raise AssertionError("a probe never sheds")

        async def restore(self) -> CommandOutcome:
            return CommandOutcome(acked=answers.pop(0), accepted=False, reason="not shed")

    clock = Clock()
    with Store.open(tmp_path / "c.db", clock) as store:
        probe = AckProbe({"chiller": Load()}, every_s=60)
        mon = AlarmMonitor(store, CollectorRegistry(), "site", probe=probe)
        mon.start()
        shed = WriteRecord(at(0), "chiller", "load_shed", True, False)
        mon.on_cycle(report(0, errors=("command chiller: no acknowledgement",), writes=(shed,)))
        for i in range(1, 10):  # a probe at once, then one a minute: the first goes unanswered
            clock.t = at(i)
            mon.on_cycle(report(i))
            for _ in range(3):
                await asyncio.sleep(0)
        assert probe.sent == {"chiller": 2}
        assert store.active_alarms() == []


def test_a_fallback_plan_is_an_alarm_until_a_regular_plan(tmp_path: Any) -> None:
    with Store.open(tmp_path / "c.db", Clock()) as store:
        mon = AlarmMonitor(store, CollectorRegistry(), "site")
        mon.on_plan("time_limit", fallback_active=False)  # the best plan found in time: usable, no alarm
        assert mon.rules.active == set()
        mon.on_plan("infeasible", fallback_active=True)
        assert mon.rules.active == {("plan_fallback", "")}
        mon.on_plan("optimal", fallback_active=False)
        assert mon.rules.active == set() and store.active_alarms() == []
