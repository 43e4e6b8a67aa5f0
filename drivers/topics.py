"""The MQTT topic scheme between the park controller and its devices, and strict payload codecs.

Everything lives under ``park/{site}/``:

==========================  =========  ===  ======  ====================================================
topic                       direction  QoS  retain  payload
==========================  =========  ===  ======  ====================================================
``load/{id}/state``         dev → ctl  1    yes     {"ts", "p_kw": float, "running": bool, "seq": int}
``load/{id}/cmd``           ctl → dev  1    no      {"id": str, "action": "shed"|"restore", "ts"}
``load/{id}/ack``           dev → ctl  1    no      {"id": cmd id, "accepted": bool, "reason": str, "ts"}
``load/{id}/availability``  dev → ctl  1    yes     "online" | "offline" (the device's last will)
``controller/status``       ctl → all  1    yes     "online" | "offline" (the controller's last will)
``controller/...``          reserved   -    -       the controller's measurements, plan, alarms
``dr/event``                grid→ctl   1    no      an OpenADR-3-shaped event (see :mod:`dr.wire`)
``dr/ack``                  ctl→grid   1    no      {"id", "modificationNumber", "status", "optIn", ...}
``dr/...``                  reserved   -    -       demand-response reports
==========================  =========  ===  ======  ====================================================

``ts`` is ISO-8601 with a UTC offset. State is retained so a (re)connecting controller sees the last
report at once; its ``ts`` then tells the controller whether it is still fresh enough to trust. A command
is never retained: a retained "shed" would be executed again by every reconnecting device. QoS 1 may
deliver a command twice; devices answer a repeated command id with the same ack and do not re-apply it.

Decoders are strict on what they need (missing fields, wrong types, NaN/inf, naive timestamps, oversized
payloads all raise :class:`PayloadError`) and ignore extra keys, so a device with newer firmware can add
fields without breaking an older controller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from drivers import strict_json as sj
from drivers.strict_json import PayloadError as PayloadError  # re-exported: callers catch tp.PayloadError

ROOT: Final = "park"
MAX_PAYLOAD_BYTES: Final = 4096
MAX_ID_CHARS: Final = 64
MAX_REASON_CHARS: Final = 256
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"

Kind = Literal["state", "cmd", "ack", "availability"]
Action = Literal["shed", "restore"]
LOAD_KINDS: Final[tuple[Kind, ...]] = ("state", "cmd", "ack", "availability")
ACTIONS: Final[tuple[Action, ...]] = ("shed", "restore")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One row of the scheme: the pattern (with ``{site}``/``{id}``), who publishes it, QoS and retain."""

    pattern: str
    publisher: Literal["device", "controller", "grid"]
    qos: int
    retain: bool


SCHEME: Final[dict[str, TopicSpec]] = {
    "state": TopicSpec("park/{site}/load/{id}/state", "device", 1, True),
    "cmd": TopicSpec("park/{site}/load/{id}/cmd", "controller", 1, False),
    "ack": TopicSpec("park/{site}/load/{id}/ack", "device", 1, False),
    "availability": TopicSpec("park/{site}/load/{id}/availability", "device", 1, True),
    "controller_status": TopicSpec("park/{site}/controller/status", "controller", 1, True),
    "dr_event": TopicSpec("park/{site}/dr/event", "grid", 1, False),
    "dr_ack": TopicSpec("park/{site}/dr/ack", "controller", 1, False),
}
RESERVED_PREFIXES: Final = ("park/{site}/controller/", "park/{site}/dr/")


def check_name(name: str, what: str = "name") -> str:
    """A site or load id must be one safe topic level: no '/', '+', '#', spaces; at most 64 chars."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not usable in an MQTT topic (letters, digits, '_.-', ≤ 64)")
    return name


def load_topic(site: str, load_id: str, kind: Kind) -> str:
    if kind not in LOAD_KINDS:
        raise ValueError(f"unknown load topic kind {kind!r}")
    return f"{ROOT}/{check_name(site, 'site')}/load/{check_name(load_id, 'load id')}/{kind}"


def load_wildcard(site: str, kind: Kind) -> str:
    """Subscription filter for one kind of topic of every load of the site."""
    if kind not in LOAD_KINDS:
        raise ValueError(f"unknown load topic kind {kind!r}")
    return f"{ROOT}/{check_name(site, 'site')}/load/+/{kind}"


def controller_status_topic(site: str) -> str:
    return f"{ROOT}/{check_name(site, 'site')}/controller/status"


def dr_event_topic(site: str) -> str:
    """Demand-response events from the grid company's gateway to the controller."""
    return f"{ROOT}/{check_name(site, 'site')}/dr/event"


def dr_ack_topic(site: str) -> str:
    """The controller's answers to demand-response events."""
    return f"{ROOT}/{check_name(site, 'site')}/dr/ack"


def parse_load_topic(site: str, topic: str) -> tuple[str, Kind] | None:
    """``(load_id, kind)`` for a load topic of this site, None for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[1] != site or parts[2] != "load":
        return None
    load_id, kind = parts[3], parts[4]
    if kind not in LOAD_KINDS or not _NAME.fullmatch(load_id):
        return None
    return load_id, kind


# -- payloads ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateReport:
    ts: datetime
    p_kw: float
    running: bool
    seq: int

    def encode(self) -> bytes:
        return _dump({"ts": _ts(self.ts), "p_kw": self.p_kw, "running": self.running, "seq": self.seq})

    @classmethod
    def decode(cls, payload: bytes) -> StateReport:
        d = _load(payload)
        seq = _get(d, "seq", int)
        if seq < 0:
            raise PayloadError("bad_value", f"seq must be >= 0, got {seq}")
        return cls(_get_ts(d), _get_float(d, "p_kw"), _get(d, "running", bool), seq)


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    action: Action
    ts: datetime

    def encode(self) -> bytes:
        return _dump({"id": self.id, "action": self.action, "ts": _ts(self.ts)})

    @classmethod
    def decode(cls, payload: bytes) -> Command:
        d = _load(payload)
        action = _get(d, "action", str)
        if action not in ACTIONS:
            raise PayloadError("bad_value", f"action must be 'shed' or 'restore', got {action!r}")
        return cls(_get_id(d), action, _get_ts(d))


@dataclass(frozen=True, slots=True)
class Ack:
    id: str
    accepted: bool
    reason: str
    ts: datetime

    def encode(self) -> bytes:
        reason = self.reason[:MAX_REASON_CHARS]
        return _dump({"id": self.id, "accepted": self.accepted, "reason": reason, "ts": _ts(self.ts)})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        d = _load(payload)
        reason = _get(d, "reason", str)
        if len(reason) > MAX_REASON_CHARS:
            raise PayloadError("bad_value", f"reason longer than {MAX_REASON_CHARS} characters")
        return cls(_get_id(d), _get(d, "accepted", bool), reason, _get_ts(d))


def decode_availability(payload: bytes) -> bool:
    """True for ``online``, False for ``offline``."""
    if payload == ONLINE:
        return True
    if payload == OFFLINE:
        return False
    raise PayloadError("bad_value", f"availability must be 'online' or 'offline', got {payload[:32]!r}")


def peek_command_id(payload: bytes) -> str | None:
    """The ``id`` of a command that failed to decode, when one can still be read (to refuse it by id)."""
    try:
        return _get_id(_load(payload))
    except PayloadError:
        return None


# -- helpers -------------------------------------------------------------------------------------------


def _load(payload: bytes) -> dict[str, Any]:
    return sj.load_object(payload, MAX_PAYLOAD_BYTES)


def _get(d: dict[str, Any], key: str, typ: type[Any]) -> Any:
    return sj.get(d, key, typ)


def _get_float(d: dict[str, Any], key: str) -> float:
    return sj.finite(sj.get(d, key, object), key)


def _get_id(d: dict[str, Any]) -> str:
    v = _get(d, "id", str)
    if not 0 < len(v) <= MAX_ID_CHARS or not v.isprintable():
        raise PayloadError("bad_value", f"id must be 1..{MAX_ID_CHARS} printable characters")
    return v  # type: ignore[no-any-return]


def _get_ts(d: dict[str, Any]) -> datetime:
    return sj.parse_ts(_get(d, "ts", str), "ts")


_ts = sj.iso
_dump = sj.dump
