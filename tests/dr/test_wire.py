"""The DR event codec: valid events decode to the expected spec, anything else raises EventError only."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.event import DrAck, DrEventSpec, DrInterval
from dr.wire import (
    MAX_EVENT_BYTES,
    EventError,
    decode_ack,
    decode_event,
    encode_ack,
    encode_event,
    format_duration,
    parse_duration,
    peek_event_id,
)

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 16, 19, 0, tzinfo=TZ)
M15 = timedelta(minutes=15)


def event(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "objectType": "EVENT", "programID": "hunan-peak", "id": "evt-1", "modificationNumber": 0, "priority": 1,
        "notice": "DAY_AHEAD", "createdDateTime": "2026-07-15T10:00:00+08:00", "cancelled": False,
        "intervalPeriod": {"start": "2026-07-16T19:00:00+08:00", "duration": "PT15M"},
        "intervals": [
            {"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3000]}]},
            {"id": 1, "payloads": [{"type": "REDUCTION", "values": [500.5]}]},
            {"id": 2, "payloads": [{"type": "DISPATCH_SETPOINT_RELATIVE", "values": [-400]}]},
        ],
    }  # fmt: skip
    d.update(over)
    return d


def raw(d: Any) -> bytes:
    return json.dumps(d).encode()


def reason_of(payload: bytes) -> str:
    with pytest.raises(EventError) as info:
        decode_event(payload)
    return info.value.reason


def test_decodes_consecutive_intervals_and_normalises_relative_setpoints() -> None:
    spec = decode_event(raw(event()))
    assert (spec.event_id, spec.programme_id, spec.modification_number, spec.priority) == ("evt-1", "hunan-peak", 0, 1)
    assert spec.notice == "DAY_AHEAD" and not spec.cancelled
    assert spec.created == datetime(2026, 7, 15, 10, tzinfo=TZ)
    assert spec.intervals == (
        DrInterval(T0, T0 + M15, "import_cap", 3000.0),
        DrInterval(T0 + M15, T0 + 2 * M15, "reduction", 500.5),
        DrInterval(T0 + 2 * M15, T0 + 3 * M15, "reduction", 400.0),
    )
    assert spec.start == T0 and spec.end == T0 + 3 * M15


def test_intervals_with_their_own_period_must_be_contiguous() -> None:
    own = event(intervalPeriod=None, intervals=[
        {"id": 0, "intervalPeriod": {"start": "2026-07-16T19:00:00+08:00", "duration": "PT1H"},
         "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3000]}]},
        {"id": 1, "intervalPeriod": {"start": "2026-07-16T20:00:00+08:00", "duration": "PT30M"},
         "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [2500]}]},
    ])  # fmt: skip
    spec = decode_event(raw(own))
    assert [iv.duration for iv in spec.intervals] == [timedelta(hours=1), timedelta(minutes=30)]
    gap = json.loads(raw(own))
    gap["intervals"][1]["intervalPeriod"]["start"] = "2026-07-16T20:15:00+08:00"
    assert reason_of(raw(gap)) == "bad_intervals"
    overlap = json.loads(raw(own))
    overlap["intervals"][1]["intervalPeriod"]["start"] = "2026-07-16T19:45:00+08:00"
    with pytest.raises(EventError, match="overlaps"):
        decode_event(raw(overlap))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"modificationNumber": "0"}, "bad_type"),
        ({"modificationNumber": True}, "bad_type"),
        ({"modificationNumber": -1}, "bad_value"),
        ({"objectType": "REPORT"}, "bad_value"),
        ({"notice": "SOON"}, "bad_value"),
        ({"id": ""}, "bad_value"),
        ({"createdDateTime": "2026-07-15T10:00:00"}, "bad_ts"),
        ({"createdDateTime": "yesterday"}, "bad_ts"),
        ({"intervalPeriod": {"start": "2026-07-16T19:00:00", "duration": "PT15M"}}, "bad_ts"),
        ({"intervalPeriod": {"start": "2026-07-16T19:00:00+08:00", "duration": "15 minutes"}}, "bad_duration"),
        ({"intervalPeriod": {"start": "2026-07-16T19:00:00+08:00", "duration": "P1M"}}, "bad_duration"),
        ({"intervalPeriod": {"start": "2026-07-16T19:00:00+08:00", "duration": "PT0M"}}, "bad_duration"),
        ({"intervalPeriod": {"start": "2026-07-16T19:00:00+08:00"}}, "missing_field"),
        ({"intervals": []}, "missing_field"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [1]}]}]}, "unknown_payload_type"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "REDUCTION", "values": [0]}]}]}, "bad_value"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "REDUCTION", "values": [1, 2]}]}]}, "bad_payload"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT_RELATIVE", "values": [5]}]}]},
         "bad_value"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [1e400]}]}]},
         "not_finite"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": ["3000"]}]}]},
         "bad_type"),
        ({"intervals": [{"id": 0, "payloads": [{"type": "REDUCTION", "values": [1]}]}] * 2}, "bad_intervals"),
    ],
)  # fmt: skip
def test_rejects_with_a_reason_code(change: dict[str, Any], reason: str) -> None:
    assert reason_of(raw(event(**change))) == reason


def test_rejects_nan_size_and_non_objects() -> None:
    assert reason_of(raw(event()).replace(b"3000", b"NaN")) == "not_finite"
    assert reason_of(b"x" * (MAX_EVENT_BYTES + 1)) == "too_large"
    assert reason_of(b"[1, 2]") == "bad_json"
    assert reason_of(b"\xff\xfe") == "bad_json"
    assert reason_of(b"[" * 60_000) == "bad_json"
    assert reason_of(b'{"n": ' + b"9" * 5000 + b"}") == "bad_json"


def test_an_event_past_the_calendar_is_refused() -> None:
    far = event(intervalPeriod={"start": "9999-12-31T23:50:00+00:00", "duration": "PT15M"})
    assert reason_of(raw(far)) == "bad_value"


def test_cancellation_may_come_without_intervals() -> None:
    spec = decode_event(raw(event(cancelled=True, intervals=[], intervalPeriod=None, modificationNumber=3)))
    assert spec.cancelled and spec.intervals == () and spec.modification_number == 3


def test_peek_reads_the_id_of_a_broken_event() -> None:
    assert peek_event_id(raw(event(notice="SOON", modificationNumber=4))) == ("evt-1", 4)
    assert peek_event_id(raw(event(modificationNumber="x"))) == ("evt-1", 0)
    assert peek_event_id(b"not json") is None


@pytest.mark.parametrize(("text", "seconds"), [("PT15M", 900), ("PT1H30M", 5400), ("P1DT2H", 93600),
                                               ("PT0.5S", 0.5), ("P1W", 604800)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    td = parse_duration(text)
    assert td.total_seconds() == seconds
    assert parse_duration(format_duration(td)) == td


def test_ack_round_trip() -> None:
    ack = DrAck("evt-1", 2, "accepted", True, "ok", 1234.5, T0)
    assert decode_ack(encode_ack(ack)) == ack
    d = json.loads(encode_ack(ack))
    assert d == {"id": "evt-1", "modificationNumber": 2, "status": "accepted", "optIn": True, "reason": "ok",
                 "capacityKw": 1234.5, "ts": "2026-07-16T19:00:00+08:00"}  # fmt: skip


# -- properties ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _dumps(v: Any) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_event_errors(payload: bytes) -> None:
    with contextlib.suppress(EventError):
        decode_event(payload)
    peek_event_id(payload)


@settings(max_examples=200)
@given(st.sampled_from(["", "intervalPeriod", "intervals", "cancelled", "priority", "id", "createdDateTime",
                        "notice", "modificationNumber", "programID", "objectType"]),
       st.sampled_from(["", "intervalPeriod", "payloads", "id", "start", "duration", "values", "type"]),
       json_values)  # fmt: skip
def test_mutated_events_raise_only_event_errors(key: str, inner: str, value: Any) -> None:
    """A valid event with one field (top level, or inside every interval/period/payload) replaced."""
    d = event()
    text = _dumps(value)

    def fresh() -> Any:
        return json.loads(text)  # a copy per place: the same object twice would be a cycle for json

    if key:
        d[key] = fresh()
    if inner:
        for iv in d["intervals"] if isinstance(d.get("intervals"), list) else []:
            if isinstance(iv, dict):
                iv[inner] = fresh()
                for p in iv.get("payloads", []) if isinstance(iv.get("payloads"), list) else []:
                    if isinstance(p, dict):
                        p[inner] = fresh()
        if isinstance(d.get("intervalPeriod"), dict):
            d["intervalPeriod"][inner] = fresh()
    try:
        spec = decode_event(_dumps(d))
    except EventError:
        return
    assert spec.intervals and all(iv.end > iv.start for iv in spec.intervals)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json_raises_only_event_errors(value: Any) -> None:
    with pytest.raises(EventError):
        decode_event(_dumps(value))


intervals_st = st.lists(
    st.tuples(st.integers(1, 8 * 4) .map(lambda q: timedelta(minutes=15 * q)),
              st.sampled_from(["import_cap", "reduction"]),
              st.floats(0.5, 1e5, allow_nan=False)),
    min_size=1, max_size=6,
)  # fmt: skip


@settings(max_examples=200)
@given(intervals_st, st.integers(0, 2**31 - 1), st.booleans(), st.integers(-12, 14))
def test_encode_decode_round_trip(ivs: list[Any], mod: int, cancelled: bool, offset_h: int) -> None:
    from datetime import timezone

    tz = timezone(timedelta(hours=offset_h))
    t, out = T0.astimezone(tz), []
    for length, kind, value in ivs:
        out.append(DrInterval(t, t + length, kind, value))
        t += length
    spec = DrEventSpec("e-1", "p", mod, 0, "REAL_TIME", T0, tuple(out), cancelled)
    assert decode_event(encode_event(spec)) == spec
