"""The DR state machine against a real SQLite store: decisions, updates, repeats, cancellation, restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.store import Store, StoreSettings
from dr.config import DrConfig, ProgrammeConfig
from dr.event import DrEventSpec, DrInterval
from dr.manager import DrManager
from dr.persist import KIND, KIND_REJECTED

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 16, 19, 0, tzinfo=TZ)  # event start
NOW = T0 - timedelta(hours=20)  # received the day before
M15 = timedelta(minutes=15)
H = timedelta(hours=1)


class FixedNow:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


def cfg(**prog: Any) -> DrConfig:
    base: dict[str, Any] = {"price_cny_per_kwh": 1.5, "penalty_cny_per_kwh": 3.0}
    return DrConfig(programmes={"hunan-peak": ProgrammeConfig(**(base | prog))})


def spec(event_id: str = "evt-1", *, start: datetime = T0, length: timedelta = H, cap_kw: float = 3000,
         mod: int = 0, kind: str = "import_cap", cancelled: bool = False, programme: str = "hunan-peak",
         notice: str = "DAY_AHEAD") -> DrEventSpec:  # fmt: skip
    iv = DrInterval(start, start + length, kind, cap_kw)  # type: ignore[arg-type]
    return DrEventSpec(event_id, programme, mod, 0, notice, NOW, (iv,), cancelled)  # type: ignore[arg-type]


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open(":memory:", FixedNow(NOW), StoreSettings(checkpoint_s=None)) as s:
        yield s


class Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def manager(store: Store, config: DrConfig | None = None, capacity_kw: float = 5000.0,
            baseline_kw: float | None = None) -> tuple[DrManager, Recorder]:  # fmt: skip
    rec = Recorder()

    def baseline(s: DrEventSpec) -> list[float]:
        if baseline_kw is None:
            raise RuntimeError("no history")
        n = int((s.end - s.start) / M15) + 1
        return [baseline_kw + 100 * i for i in range(n)]  # rises 100 kW per quarter-hour

    m = DrManager(config or cfg(), store, baseline_fn=baseline, capacity_fn=lambda a, b: capacity_kw,
                  on_change=[rec])  # fmt: skip
    return m, rec


def test_accept_persists_notifies_and_holds_the_cap(store: Store) -> None:
    m, changes = manager(store)
    ack = m.handle(spec(cap_kw=3000), NOW)
    assert (ack.status, ack.opt_in, ack.reason, ack.capacity_kw, ack.ts) == ("accepted", True, "ok", 5000.0, NOW)
    assert changes.reasons == ["dr event evt-1 accepted"]
    [row] = store.events(KIND)
    assert (row.external_id, row.state) == ("evt-1", "accepted")
    assert row.payload["ack"]["status"] == "accepted" and row.payload["spec"]["intervals"][0]["value_kw"] == 3000
    assert m.import_cap_at(T0 - timedelta(seconds=1)) is None
    assert m.import_cap_at(T0) == 3000 and m.import_cap_at(T0 + H - timedelta(seconds=1)) == 3000
    assert m.import_cap_at(T0 + H) is None
    # the planner's view: a horizon from 18:00 in 15-min steps -> steps 4..8
    [ev] = m.dr_source(T0 - H, 900, 96)
    assert (ev.kind, ev.first_step, ev.end_step, ev.cap_kw, ev.penalty_cny_per_kwh) == ("import_cap", 4, 8, 3000, 3)


def test_malformed_event_is_refused_by_id_and_counted(store: Store) -> None:
    m, changes = manager(store)
    ack = m.reject_malformed("evt-9", 2, "bad_duration", "duration 'x' is not ISO-8601", NOW)
    assert (ack.event_id, ack.modification_number, ack.status, ack.opt_in) == ("evt-9", 2, "rejected", False)
    assert ack.reason.startswith("bad_duration")
    assert m.decisions["bad_duration"] == 1 and not changes.reasons and "evt-9" not in m.records


def test_unknown_programme_and_past_events_are_rejected(store: Store) -> None:
    m, changes = manager(store)
    ack = m.handle(spec(programme="jiangsu"), NOW)
    assert ack.status == "rejected" and "unknown programme" in ack.reason
    past = m.handle(spec("evt-2", start=NOW - 2 * H), NOW)
    assert (past.status, m.decisions["event_in_past"]) == ("rejected", 1)
    assert not changes.reasons and m.import_cap_at(NOW - H) is None
    assert {e.external_id: e.state for e in store.events(KIND)} == {"evt-1": "rejected", "evt-2": "rejected"}


def test_overlap_with_another_committed_event_is_rejected(store: Store) -> None:
    m, _ = manager(store)
    m.handle(spec("evt-1"), NOW)
    ack = m.handle(spec("evt-2", start=T0 + 30 * 60 * timedelta(seconds=1)), NOW)
    assert (ack.status, ack.reason) == ("rejected", "overlap with evt-1")
    assert m.handle(spec("evt-3", start=T0 + H), NOW).status == "accepted"  # back to back is fine


def test_update_replaces_the_event_and_asks_for_a_replan(store: Store) -> None:
    m, changes = manager(store)
    m.handle(spec(cap_kw=3000), NOW)
    ack = m.handle(spec(cap_kw=2500, mod=1, length=2 * H), NOW + H)
    assert (ack.status, ack.modification_number, ack.opt_in) == ("updated", 1, True)
    assert m.import_cap_at(T0 + H + M15) == 2500
    assert changes.reasons[-1] == "dr event evt-1 updated"
    [row] = store.events(KIND)
    assert row.payload["spec"]["modification_number"] == 1


def test_stale_update_is_rejected_and_the_event_stays(store: Store) -> None:
    m, changes = manager(store)
    m.handle(spec(cap_kw=2500, mod=3), NOW)
    ack = m.handle(spec(cap_kw=100, mod=2), NOW)
    assert ack.status == "rejected" and "not newer" in ack.reason
    same_mod = m.handle(spec(cap_kw=100, mod=3), NOW)  # same number, other content: also stale
    assert same_mod.status == "rejected"
    assert m.import_cap_at(T0) == 2500 and len(changes.reasons) == 1
    assert [e.external_id for e in store.events(KIND_REJECTED)] == ["evt-1/2", "evt-1/3"]
    assert [e.state for e in store.events(KIND)] == ["accepted"]


def test_identical_repeat_gets_the_same_ack_and_changes_nothing(store: Store) -> None:
    m, changes = manager(store)
    first = m.handle(spec(), NOW)
    again = m.handle(spec(), NOW + timedelta(seconds=5))  # a QoS-1 duplicate, a little later
    assert again == first and again.ts == NOW
    assert m.decisions["duplicate"] == 1 and len(changes.reasons) == 1
    refused = m.handle(spec("evt-2", programme="x"), NOW)
    assert m.handle(spec("evt-2", programme="x"), NOW + H) == refused  # a rejection repeats too


def test_cancelling_a_running_event_ends_the_commitment_now(store: Store) -> None:
    m, changes = manager(store)
    m.handle(spec(length=2 * H), NOW)
    m.tick(T0 + M15)
    assert store.events(KIND)[0].state == "active" and m.import_cap_at(T0 + M15) == 3000
    cancel_at = T0 + 30 * timedelta(minutes=1)
    cancel = dataclasses.replace(spec(mod=1), intervals=(), cancelled=True)
    ack = m.handle(cancel, cancel_at)
    assert (ack.status, ack.opt_in, ack.reason) == ("cancelled", False, "cancelled while running")
    assert m.import_cap_at(cancel_at) is None and m.dr_source(T0, 900, 8) == []
    assert changes.reasons[-1] == "dr event evt-1 cancelled"
    [row] = store.events(KIND)
    assert row.state == "cancelled" and row.payload["ended"] == cancel_at.isoformat()
    assert row.payload["spec"]["intervals"]  # the original window is kept for the report
    assert m.handle(cancel, cancel_at + M15) == ack  # repeated cancellation: same ack
    m.tick(T0 + 3 * H)
    assert store.events(KIND)[0].state == "cancelled"


def test_cancelling_an_unknown_or_finished_event_is_rejected(store: Store) -> None:
    m, _ = manager(store)
    cancel = dataclasses.replace(spec("nope"), intervals=(), cancelled=True)
    assert m.handle(cancel, NOW).status == "rejected"
    m.handle(spec(), NOW)
    m.tick(T0 + 2 * H)
    assert store.events(KIND)[-1].state == "completed"
    assert m.handle(dataclasses.replace(spec(mod=1), cancelled=True), T0 + 2 * H).status == "rejected"


def test_states_follow_the_clock(store: Store) -> None:
    m, _ = manager(store)
    m.handle(spec(), NOW)
    states = []
    for t in (T0 - M15, T0, T0 + H):
        m.tick(t)
        states.append(store.events(KIND)[0].state)
    assert states == ["accepted", "active", "completed"]


def test_opt_out_when_capacity_or_notice_is_short(store: Store) -> None:
    m, changes = manager(store, capacity_kw=200.0, baseline_kw=4000.0)
    # cap 3000 against a baseline of 4000..4300 kW asks up to 1300 kW; 200 kW < 50 % of it
    ack = m.handle(spec(cap_kw=3000), NOW)
    assert (ack.status, ack.opt_in) == ("accepted", False) and "capacity 200 kW < 50% of 1300 kW" in ack.reason
    assert m.import_cap_at(T0) is None and not changes.reasons
    m2, _ = manager(store, config=cfg(min_notice_s={"REAL_TIME": 600.0}))
    late = m2.handle(spec("evt-2", start=NOW + timedelta(seconds=60), notice="REAL_TIME"), NOW)
    assert not late.opt_in and "notice 60 s < 600 s" in late.reason
    m3, _ = manager(store, config=cfg(auto_opt_in=False))
    assert not m3.handle(spec("evt-3", start=T0 + 5 * H), NOW).opt_in


def test_reduction_commits_baseline_minus_reduction(store: Store) -> None:
    m, _ = manager(store, baseline_kw=4000.0)
    ack = m.handle(spec(kind="reduction", cap_kw=500), NOW)
    assert ack.opt_in
    assert m.import_cap_at(T0) == 3500 and m.import_cap_at(T0 + M15) == 3600  # baseline rises 100 per slot
    [ev] = m.dr_source(T0, 900, 8)
    assert (ev.kind, ev.first_step, ev.end_step, ev.committed_kw) == ("reduction", 0, 4, 500)
    assert ev.baseline_kw == [4000, 4100, 4200, 4300]
    [hourly] = m.dr_source(T0, 3600, 2)  # a coarser plan step takes the mean of its slots
    assert hourly.baseline_kw == [4150]


def test_reduction_without_a_baseline_is_not_committed(store: Store) -> None:
    m, _ = manager(store, baseline_kw=None)
    ack = m.handle(spec(kind="reduction", cap_kw=500), NOW)
    assert ack.status == "accepted" and not ack.opt_in and "no baseline" in ack.reason


def test_reload_after_restart_from_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "parkctl.db"
    with Store.open(path, FixedNow(NOW), StoreSettings(checkpoint_s=None)) as s1:
        m1, _ = manager(s1)
        first = m1.handle(spec("evt-1", length=2 * H), NOW)
        m1.handle(spec("evt-2", start=T0 + 3 * H, cap_kw=2000), NOW)
        m1.handle(spec("evt-3", programme="x"), NOW)
        m1.tick(T0 + M15)
    with Store.open(path, FixedNow(T0 + M15), StoreSettings(checkpoint_s=None)) as s2:
        m2, _ = manager(s2)
        assert m2.load() == 2
        assert {k: r.state for k, r in m2.records.items()} == {"evt-1": "active", "evt-2": "accepted",
                                                               "evt-3": "rejected"}  # fmt: skip
        assert m2.import_cap_at(T0 + M15) == 3000 and m2.import_cap_at(T0 + 3 * H) == 2000
        assert m2.handle(spec("evt-1", length=2 * H), T0 + M15) == first  # a late duplicate: same ack
        assert m2.handle(spec("evt-4", start=T0 + H), T0 + M15).reason == "overlap with evt-1"
