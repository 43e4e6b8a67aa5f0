"""The MQTT payload decoders face every device on the broker: on any bytes they decode or raise PayloadError."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import topics as tp

DECODERS: dict[str, Callable[[bytes], object]] = {
    "state": tp.StateReport.decode,
    "ack": tp.Ack.decode,
    "cmd": tp.Command.decode,
    "availability": tp.decode_availability,
}
KEYS = ("ts", "p_kw", "running", "seq", "id", "action", "accepted", "reason")
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80) | st.sampled_from(["2026-07-15T12:00:00+08:00", "2026-07-15T12:00:00", "shed",
                                             "restore", "9999-12-31T23:59:59-23:59"])
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)
objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=8)
# almost-right payloads reach the field checks; raw bytes and odd JSON test the parser itself
payloads = (
    st.binary(max_size=300)
    | objects.map(lambda d: json.dumps(d).encode())
    | st.sampled_from([b"NaN", b"[1e999]", b'{"p_kw": 1e999}', b'{"p_kw": -Infinity}', b"[" * 5000,
                       b"{}" + b" " * tp.MAX_PAYLOAD_BYTES, b'{"seq": 1' + b"0" * 5000 + b"}", b"\xff\xfe{}",
                       b"online", b"offline", b""])
)  # fmt: skip


def _check(kind: str, value: object) -> None:
    if kind == "availability":
        assert isinstance(value, bool)
        return
    for name in getattr(value, "__slots__", ()):
        v = getattr(value, name)
        if isinstance(v, float):
            assert math.isfinite(v), (name, v)
        if name == "ts":
            assert isinstance(v, datetime) and v.utcoffset() is not None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), payloads)
def test_decoders_raise_only_payload_error(kind: str, payload: bytes) -> None:
    try:
        value = DECODERS[kind](payload)
    except tp.PayloadError as exc:
        assert exc.reason and str(exc)
        return
    _check(kind, value)


@settings(max_examples=150, deadline=None)
@given(payloads)
def test_peek_command_id_never_raises(payload: bytes) -> None:
    cid = tp.peek_command_id(payload)
    assert cid is None or 0 < len(cid) <= tp.MAX_ID_CHARS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_topic_parser_never_raises(topic: str) -> None:
    parsed = tp.parse_load_topic("site", topic)
    assert parsed is None or (parsed[1] in tp.LOAD_KINDS and tp.load_topic("site", *parsed) == topic)
