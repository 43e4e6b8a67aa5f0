"""The scenario's demand-response section: calls become the events the controller parses."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dr.wire import decode_event, encode_event
from parkctl.errors import ConfigError
from sim.dr_calls import GridCall
from sim.scenario import load_scenario, parse_scenario


def _call(**kw: object) -> GridCall:
    base: dict[str, object] = {
        "id": "evt-1", "programme": "p", "sent_at": "2026-07-15T00:10:00+08:00",
        "start": "2026-07-15T19:00:00+08:00", "type": "REDUCTION", "values_kw": [1500, 1200],
    }  # fmt: skip
    return GridCall.model_validate({**base, **kw})


def test_a_call_becomes_consecutive_intervals_that_survive_the_wire() -> None:
    call = _call(interval_min=30)
    spec = call.spec()
    assert [iv.value_kw for iv in spec.intervals] == [1500, 1200]
    assert spec.intervals[0].end == spec.intervals[1].start
    assert spec.end - spec.start == timedelta(hours=1) and spec.end == call.end
    assert {iv.kind for iv in spec.intervals} == {"reduction"}
    assert decode_event(encode_event(spec)) == spec


def test_a_cancellation_is_a_newer_modification_of_the_same_event() -> None:
    at = datetime.fromisoformat("2026-07-15T06:00:00+08:00")
    spec = _call(type="IMPORT_CAPACITY_LIMIT").spec(cancelled=True, modification=1, created=at)
    assert spec.cancelled and spec.modification_number == 1 and spec.created == at
    assert spec.intervals[0].kind == "import_cap"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sent_at": "2026-07-15T00:10:00"}, "UTC offset"),
        ({"cancel_at": "2026-07-15T00:00:00+08:00"}, "cancel_at must be after sent_at"),
        ({"values_kw": []}, "values_kw"),
        ({"type": "SIMPLE"}, "type"),
    ],
)
def test_a_bad_call_is_refused_with_its_field(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        _call(**change)


def test_the_dr_event_day_scenario_has_what_every_baseline_method_needs() -> None:
    sc = load_scenario("dr-event-day")
    dr = sc.demand_response
    assert dr is not None
    methods = {p.baseline for p in dr.programmes.values()}
    assert methods == {"five_day", "ten_in_ten", "pre_event_15min"}
    # ten like (working) days need two calendar weeks before the day
    assert dr.history_days >= 14
    notices = {c.notice for c in dr.calls}
    assert {"DAY_AHEAD", "REAL_TIME"} <= notices
    rt = next(c for c in dr.calls if c.notice == "REAL_TIME")
    assert rt.start - rt.sent_at == timedelta(minutes=15)
    assert dr.dr_config().programmes.keys() == dr.programmes.keys()


def test_a_call_for_a_programme_the_park_is_not_in_is_a_scenario_error() -> None:
    text = (load_scenario("dr-event-day").model_dump_json())
    bad = text.replace('"programme":"hunan-realtime"', '"programme":"nowhere"')
    with pytest.raises(ConfigError, match="nowhere"):
        parse_scenario(bad, "test")
