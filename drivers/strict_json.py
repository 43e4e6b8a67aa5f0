"""Strict JSON for payloads that come from outside: MQTT devices (:mod:`drivers.topics`) and the grid
company's demand-response events (:mod:`dr.wire`).

Strict on what is needed (size cap, an object at the top, no NaN/Infinity, types checked with ``true`` never
passing for a number, finite floats, ISO-8601 times with a UTC offset) and silent about extra keys. Every
refusal is a :class:`PayloadError` (or the subclass a caller passes as ``err``) whose ``reason`` is a short
code fit for a counter label.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any


class PayloadError(ValueError):
    """A payload that does not follow its scheme; ``reason`` is a short code suitable for a counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


Err = type[PayloadError]


def load_object(payload: bytes, max_bytes: int, err: Err = PayloadError) -> dict[str, Any]:
    """The JSON object in ``payload``."""
    if not isinstance(payload, bytes | bytearray):
        raise err("bad_type", f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise err("too_large", f"{len(payload)} bytes > {max_bytes}")

    def reject_constant(name: str) -> Any:
        raise err("not_finite", f"{name} is not allowed")

    try:
        d = json.loads(payload, parse_constant=reject_constant)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, int digit limit
        raise err("bad_json", str(exc)[:80]) from None
    if not isinstance(d, dict):
        raise err("bad_json", f"expected a JSON object, got {type(d).__name__}")
    return d


def get(d: dict[str, Any], key: str, typ: type[Any], where: str = "", err: Err = PayloadError) -> Any:
    """``d[key]`` of type ``typ`` (``object``: any); ``where`` prefixes the name in messages."""
    name = f"{where}.{key}" if where else key
    if key not in d:
        raise err("missing_field", name)
    v = d[key]
    # bool is a subclass of int: never accept true/false where a number is expected
    if not isinstance(v, typ) or (typ is not bool and typ is not object and isinstance(v, bool)):
        raise err("bad_type", f"{name} must be {typ.__name__}, got {type(v).__name__}")
    return v


def finite(v: Any, name: str, err: Err = PayloadError) -> float:
    """A JSON number as a finite float."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise err("bad_type", f"{name} must be a number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:  # an integer too large for a float
        raise err("not_finite", f"{name} is too large") from None
    if not math.isfinite(f):
        raise err("not_finite", f"{name} is not finite")
    return f


def parse_ts(raw: str, where: str, err: Err = PayloadError) -> datetime:
    """An ISO-8601 time that carries its UTC offset."""
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise err("bad_ts", f"{where} {raw[:40]!r} is not ISO-8601") from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise err("bad_ts", f"{where} {raw[:40]!r} has no UTC offset")
    return ts


def iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("timestamps on the wire must be timezone-aware")
    return ts.isoformat()


def dump(d: dict[str, Any]) -> bytes:
    return json.dumps(d, allow_nan=False, separators=(",", ":")).encode()
