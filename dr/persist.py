"""What the controller keeps of each DR event, and its row in the store's ``events`` table.

One row per event id (``kind = "dr"``, ``external_id`` = the event id, ``state`` = the lifecycle
state): ``payload_json`` = ``{"spec": <normalised spec>, "ack": <last ack>, "ended": ts|null}``.
The report side reads the same rows with :func:`load_records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from dr.event import DrAck, DrEventSpec, DrInterval, EventState

KIND = "dr"  # events.kind of the live record of an event id
KIND_REJECTED = "dr-rejected"  # refused updates of a live event (external_id "id/modificationNumber")


@dataclass(frozen=True, slots=True)
class DrRecord:
    """An event as decided: the spec in force, the last ack sent for it, its state.

    ``ended`` is when a cancellation ended a commitment early (None otherwise).
    """

    spec: DrEventSpec
    ack: DrAck
    state: EventState
    ended: datetime | None = None

    @property
    def committed(self) -> bool:
        """Planned for and its cap held: accepted or running, opted in, not cancelled."""
        return self.state in ("accepted", "active") and self.ack.opt_in and not self.spec.cancelled


class EventStore(Protocol):
    """The part of :class:`controller.store.Store` the DR manager uses."""

    def record_event(self, kind: str, payload: Any, *, external_id: str | None = None, state: str = "new",
                     ts: datetime | None = None) -> int: ...  # fmt: skip

    def events(self, kind: str | None = None, *, state: str | None = None,
               since: datetime | None = None) -> list[Any]: ...  # fmt: skip


def spec_to_dict(spec: DrEventSpec) -> dict[str, Any]:
    return {
        "event_id": spec.event_id, "programme_id": spec.programme_id,
        "modification_number": spec.modification_number, "priority": spec.priority, "notice": spec.notice,
        "created": spec.created.isoformat(), "cancelled": spec.cancelled,
        "intervals": [{"start": iv.start.isoformat(), "end": iv.end.isoformat(), "kind": iv.kind,
                       "value_kw": iv.value_kw} for iv in spec.intervals],
    }  # fmt: skip


def spec_from_dict(d: dict[str, Any]) -> DrEventSpec:
    iso = datetime.fromisoformat
    intervals = tuple(
        DrInterval(iso(i["start"]), iso(i["end"]), i["kind"], float(i["value_kw"])) for i in d["intervals"]
    )
    return DrEventSpec(d["event_id"], d["programme_id"], int(d["modification_number"]), int(d["priority"]),
                       d["notice"], iso(d["created"]), intervals, bool(d["cancelled"]))  # fmt: skip


def ack_to_dict(ack: DrAck) -> dict[str, Any]:
    return {"event_id": ack.event_id, "modification_number": ack.modification_number, "status": ack.status,
            "opt_in": ack.opt_in, "reason": ack.reason, "capacity_kw": ack.capacity_kw,
            "ts": ack.ts.isoformat()}  # fmt: skip


def ack_from_dict(d: dict[str, Any]) -> DrAck:
    return DrAck(d["event_id"], int(d["modification_number"]), d["status"], bool(d["opt_in"]), d["reason"],
                 float(d["capacity_kw"]), datetime.fromisoformat(d["ts"]))  # fmt: skip


def record_to_payload(rec: DrRecord) -> dict[str, Any]:
    return {"spec": spec_to_dict(rec.spec), "ack": ack_to_dict(rec.ack),
            "ended": rec.ended.isoformat() if rec.ended else None}  # fmt: skip


def record_from_payload(payload: dict[str, Any], state: str) -> DrRecord:
    ended = payload.get("ended")
    return DrRecord(spec_from_dict(payload["spec"]), ack_from_dict(payload["ack"]), cast(EventState, state),
                    datetime.fromisoformat(ended) if ended else None)  # fmt: skip


def save_record(store: EventStore, rec: DrRecord, received: datetime) -> None:
    """Write (insert or replace) the event's row durably."""
    store.record_event(KIND, record_to_payload(rec), external_id=rec.spec.event_id, state=rec.state, ts=received)


def load_records(store: EventStore) -> list[DrRecord]:
    """Every DR event the store holds, in the order first recorded; unreadable rows are skipped."""
    out = []
    for ev in store.events(KIND):
        try:
            out.append(record_from_payload(ev.payload, ev.state))
        except (KeyError, TypeError, ValueError):
            continue
    return out
