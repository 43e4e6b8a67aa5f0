"""OpenADR-3-shaped JSON events in, acknowledgements out: strict codecs onto :mod:`dr.event`.

The grid company's event is untrusted input: :func:`decode_event` accepts only what the park can act
on and raises :class:`EventError` for anything else (oversized, not JSON, NaN/inf, wrong types, naive
timestamps, bad ISO-8601 durations, unknown payload types, gaps or overlaps between intervals), with
a short ``reason`` code fit for a metric label. Extra keys are ignored (newer servers add fields).

Payload types: ``IMPORT_CAPACITY_LIMIT`` (kW cap) -> kind ``import_cap``; ``REDUCTION`` (kW below
baseline, > 0) -> ``reduction``; ``DISPATCH_SETPOINT_RELATIVE`` (kW relative to baseline, < 0 reduces)
-> ``reduction`` with ``value_kw = -value``. Intervals follow each other from the event's
``intervalPeriod`` unless an interval carries its own; either way they must be contiguous.
A cancellation (``"cancelled": true``) may come without intervals.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Final

from dr.event import ACK_STATUSES, DrAck, DrEventSpec, DrInterval, IntervalKind, Notice
from drivers import strict_json as sj

MAX_EVENT_BYTES: Final = 65536
MAX_INTERVALS: Final = 576  # 48 h of 5-min intervals
MAX_EVENT_S: Final = 7 * 86400
MAX_ID_CHARS: Final = 64
MAX_REASON_CHARS: Final = 256
NOTICES: Final[tuple[Notice, ...]] = ("DAY_AHEAD", "PRE_AGREED", "REAL_TIME")
PAYLOAD_KINDS: Final[dict[str, IntervalKind]] = {
    "IMPORT_CAPACITY_LIMIT": "import_cap",
    "REDUCTION": "reduction",
    "DISPATCH_SETPOINT_RELATIVE": "reduction",
}
# Days/hours/minutes/seconds only: years and months have no fixed length.
_DURATION = re.compile(
    r"P(?:(\d{1,6})W)?(?:(\d{1,6})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,9}(?:\.\d{1,6})?)S)?)?"
)


class EventError(sj.PayloadError):
    """An event (or ack) that cannot be used; ``reason`` is a short code fit for a metric label."""


# -- events --------------------------------------------------------------------------------------------


def decode_event(payload: bytes) -> DrEventSpec:
    """Parse and validate one event; :class:`EventError` for anything the park cannot act on."""
    d = _load(payload)
    if _get(d, "objectType", str) != "EVENT":
        raise EventError("bad_value", "objectType must be 'EVENT'")
    event_id = _get_id(d, "id")
    programme = _get_id(d, "programID")
    modification = _get_int(d, "modificationNumber")
    priority = _get_int(d, "priority") if d.get("priority") is not None else 0
    notice = _get(d, "notice", str)
    if notice not in NOTICES:
        raise EventError("bad_value", f"notice must be one of {', '.join(NOTICES)}, got {notice[:40]!r}")
    created = _parse_ts(_get(d, "createdDateTime", str), "createdDateTime")
    cancelled = _get(d, "cancelled", bool) if "cancelled" in d else False
    raw = d.get("intervals", [])
    if not isinstance(raw, list):
        raise EventError("bad_type", "intervals must be a list")
    if not raw and not cancelled:
        raise EventError("missing_field", "intervals (an event needs at least one)")
    if len(raw) > MAX_INTERVALS:
        raise EventError("too_many_intervals", f"{len(raw)} intervals > {MAX_INTERVALS}")
    period = _period(d["intervalPeriod"], "intervalPeriod") if d.get("intervalPeriod") is not None else None
    intervals = _intervals(raw, period)
    return DrEventSpec(event_id, programme, modification, priority, notice, created, intervals, cancelled)


def _intervals(raw: list[Any], period: tuple[datetime | None, timedelta | None] | None) -> tuple[DrInterval, ...]:
    out: list[DrInterval] = []
    ids: set[int] = set()
    top_start, top_len = period or (None, None)
    for n, item in enumerate(raw):
        where = f"intervals[{n}]"
        if not isinstance(item, dict):
            raise EventError("bad_type", f"{where} must be an object")
        iid = _get_int(item, "id", where)
        if iid in ids:
            raise EventError("bad_intervals", f"{where}: interval id {iid} repeated")
        ids.add(iid)
        own_start, own_len = (None, None)
        if item.get("intervalPeriod") is not None:
            own_start, own_len = _period(item["intervalPeriod"], f"{where}.intervalPeriod")
        start = own_start or (out[-1].end if out else top_start)
        length = own_len or top_len
        if start is None or length is None:
            raise EventError("missing_field", f"{where}: no intervalPeriod start/duration for it or the event")
        if out and start != out[-1].end:
            gap = "overlaps" if start < out[-1].end else "leaves a gap after"
            raise EventError("bad_intervals", f"{where} starting {start.isoformat()} {gap} the previous one")
        try:
            end = start + length
        except OverflowError:
            raise EventError("bad_value", f"{where} ends beyond the calendar") from None
        kind, value = _payload(item, where)
        out.append(DrInterval(start, end, kind, value))
    if out and (out[-1].end - out[0].start).total_seconds() > MAX_EVENT_S:
        raise EventError("bad_value", f"event lasts longer than {MAX_EVENT_S // 86400} days")
    return tuple(out)


def _payload(item: dict[str, Any], where: str) -> tuple[IntervalKind, float]:
    payloads = _get(item, "payloads", list, where)
    if len(payloads) != 1 or not isinstance(payloads[0], dict):
        raise EventError("bad_payload", f"{where}.payloads must hold exactly one payload object")
    p = payloads[0]
    ptype = _get(p, "type", str, f"{where}.payloads[0]")
    if ptype not in PAYLOAD_KINDS:
        raise EventError("unknown_payload_type", f"{where}: payload type {ptype[:40]!r}")
    values = _get(p, "values", list, f"{where}.payloads[0]")
    if len(values) != 1:
        raise EventError("bad_payload", f"{where}.payloads[0].values must hold exactly one number")
    value = _finite(values[0], f"{where}.payloads[0].values[0]")
    if ptype == "IMPORT_CAPACITY_LIMIT" and value < 0:
        raise EventError("bad_value", f"{where}: IMPORT_CAPACITY_LIMIT must be >= 0 kW, got {value:g}")
    if ptype == "REDUCTION" and value <= 0:
        raise EventError("bad_value", f"{where}: REDUCTION must be > 0 kW, got {value:g}")
    if ptype == "DISPATCH_SETPOINT_RELATIVE":
        if value >= 0:
            raise EventError("bad_value", f"{where}: DISPATCH_SETPOINT_RELATIVE must be < 0 (a reduction)")
        value = -value
    return PAYLOAD_KINDS[ptype], value


def _period(raw: Any, where: str) -> tuple[datetime | None, timedelta | None]:
    if not isinstance(raw, dict):
        raise EventError("bad_type", f"{where} must be an object")
    start = _parse_ts(_get(raw, "start", str, where), f"{where}.start") if "start" in raw else None
    length = parse_duration(_get(raw, "duration", str, where), f"{where}.duration") if "duration" in raw else None
    return start, length


def encode_event(spec: DrEventSpec) -> bytes:
    """The OpenADR-3-shaped JSON of a spec (each interval with its own period); decodes back to ``spec``."""
    intervals = [
        {"id": n, "intervalPeriod": {"start": _iso(iv.start), "duration": format_duration(iv.duration)},
         "payloads": [{"type": "IMPORT_CAPACITY_LIMIT" if iv.kind == "import_cap" else "REDUCTION",
                       "values": [iv.value_kw]}]}
        for n, iv in enumerate(spec.intervals)
    ]  # fmt: skip
    d: dict[str, Any] = {
        "objectType": "EVENT", "programID": spec.programme_id, "id": spec.event_id,
        "modificationNumber": spec.modification_number, "priority": spec.priority, "notice": spec.notice,
        "createdDateTime": _iso(spec.created), "cancelled": spec.cancelled, "intervals": intervals,
    }  # fmt: skip
    if spec.intervals:
        d["intervalPeriod"] = {"start": _iso(spec.start), "duration": format_duration(spec.intervals[0].duration)}
    return _dump(d)


def peek_event_id(payload: bytes) -> tuple[str, int] | None:
    """``(id, modificationNumber)`` of an event that failed to decode, when they can still be read."""
    try:
        d = _load(payload)
        event_id = _get_id(d, "id")
        mod = d.get("modificationNumber")
        return event_id, mod if isinstance(mod, int) and not isinstance(mod, bool) and mod >= 0 else 0
    except EventError:
        return None


# -- acks ----------------------------------------------------------------------------------------------


def encode_ack(ack: DrAck) -> bytes:
    return _dump({"id": ack.event_id, "modificationNumber": ack.modification_number, "status": ack.status,
                  "optIn": ack.opt_in, "reason": ack.reason[:MAX_REASON_CHARS], "capacityKw": ack.capacity_kw,
                  "ts": _iso(ack.ts)})  # fmt: skip


def decode_ack(payload: bytes) -> DrAck:
    d = _load(payload)
    status = _get(d, "status", str)
    if status not in ACK_STATUSES:
        raise EventError("bad_value", f"status must be one of {', '.join(ACK_STATUSES)}")
    reason = _get(d, "reason", str)
    if len(reason) > MAX_REASON_CHARS:
        raise EventError("bad_value", f"reason longer than {MAX_REASON_CHARS} characters")
    return DrAck(_get_id(d, "id"), _get_int(d, "modificationNumber"), status, _get(d, "optIn", bool), reason,
                 _finite(_get(d, "capacityKw", object), "capacityKw"), _parse_ts(_get(d, "ts", str), "ts"))  # fmt: skip


# -- durations and timestamps --------------------------------------------------------------------------


def parse_duration(text: str, where: str = "duration") -> timedelta:
    """An ISO-8601 duration of weeks, days, hours, minutes, seconds ("PT15M", "P1DT2H"); > 0."""
    m = _DURATION.fullmatch(text)
    if m is None or text in {"P", "PT"} or text.endswith("T"):
        raise EventError("bad_duration", f"{where} {text[:40]!r} is not an ISO-8601 duration like PT15M")
    w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total_s = (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s
    if not 0 < total_s <= MAX_EVENT_S:
        raise EventError("bad_duration", f"{where} {text[:40]!r} must be > 0 and <= {MAX_EVENT_S // 86400} days")
    return timedelta(seconds=total_s)


def format_duration(td: timedelta) -> str:
    """ISO-8601 for a positive duration: 900 s -> "PT15M", 1 h 30 min -> "PT1H30M"."""
    us = round(td.total_seconds() * 1e6)
    if us <= 0:
        raise ValueError("durations on the wire must be positive")
    h, rest = divmod(us, 3_600_000_000)
    mi, rest = divmod(rest, 60_000_000)
    s, frac = divmod(rest, 1_000_000)
    sec = f"{s}.{frac:06d}".rstrip("0") if frac else str(s)
    return "PT" + (f"{h}H" if h else "") + (f"{mi}M" if mi else "") + (f"{sec}S" if s or frac else "")


def _parse_ts(raw: str, where: str) -> datetime:
    return sj.parse_ts(raw, where, EventError)


_iso = sj.iso
_dump = sj.dump


# -- JSON helpers --------------------------------------------------------------------------------------


def _load(payload: bytes) -> dict[str, Any]:
    return sj.load_object(payload, MAX_EVENT_BYTES, EventError)


def _get(d: dict[str, Any], key: str, typ: type[Any], where: str = "") -> Any:
    return sj.get(d, key, typ, where, EventError)


def _get_int(d: dict[str, Any], key: str, where: str = "") -> int:
    v: int = _get(d, key, int, where)
    if not 0 <= v < 2**31:
        raise EventError("bad_value", f"{f'{where}.' if where else ''}{key} must be in 0..2^31-1, got {v}")
    return v


def _get_id(d: dict[str, Any], key: str) -> str:
    v: str = _get(d, key, str)
    if not 0 < len(v) <= MAX_ID_CHARS or not v.isprintable():
        raise EventError("bad_value", f"{key} must be 1..{MAX_ID_CHARS} printable characters")
    return v


def _finite(v: Any, name: str) -> float:
    return sj.finite(v, name, EventError)
