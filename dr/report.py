"""Evidence out: one JSON document (and a CSV of its quarter-hours) per demand-response event.

Everything comes from the controller's database: the event as received and answered (``events``
rows written by :mod:`dr.manager`), the baseline fixed for it with every history row used, and the
ledger's quarter-hours. Totals are recomputed from the rows with :func:`dr.performance.summarise`,
so a report and a settlement can be checked against each other by hand.

Outcome: ``rejected`` (refused), ``opted_out`` (accepted without commitment), ``cancelled`` (by the
grid company; totals cover what ran), ``pending`` (not all quarter-hours assessed yet),
``not_assessed`` (no baseline was recorded), else ``met`` / ``missed`` against the threshold.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from dr.evidence import Evidence, StoredBaseline
from dr.ledger import truncated
from dr.performance import SlotResult, summarise
from dr.persist import spec_to_dict

OUTCOMES = ("met", "missed", "cancelled", "rejected", "opted_out", "pending", "not_assessed")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
CSV_COLUMNS = ("slot_start", "baseline_kw", "actual_kw", "delivered_kw", "delivered_kwh", "committed_kw",
               "committed_kwh", "fraction", "response_rate", "battery_kwh", "complete")  # fmt: skip


def slot_dict(r: SlotResult) -> dict[str, Any]:
    return {
        "slot_start": r.slot_start.isoformat(), "baseline_kw": r.baseline_kw, "actual_kw": r.actual_kw,
        "delivered_kw": r.delivered_kw, "delivered_kwh": r.delivered_kwh, "committed_kw": r.committed_kw,
        "committed_kwh": r.committed_kwh, "fraction": r.fraction, "response_rate": r.response_rate,
        "battery_kwh": r.battery_kwh, "shed_kwh": dict(r.shed_kwh), "complete": r.complete,
    }  # fmt: skip


def _baseline_dict(sb: StoredBaseline) -> dict[str, Any]:
    b = sb.baseline
    return {
        "method": b.method, "computed_ts": sb.computed_ts.isoformat(), "adjustment": b.adjustment,
        "days_used": [d.isoformat() for d in b.days_used],
        "slots": [{"slot_start": s.isoformat(), "baseline_kw": kw} for s, kw in zip(b.slots, b.kw, strict=True)],
        "inputs": [{"slot_start": t.isoformat(), "mean_grid_kw": kw} for t, kw in b.inputs],
        "threshold": sb.threshold, "price_cny_per_kwh": sb.price_cny_per_kwh,
        "stopped_ts": sb.stopped_ts.isoformat() if sb.stopped_ts else None,
    }  # fmt: skip


def build_report(ev: Evidence, event_id: str) -> dict[str, Any] | None:
    """The report of one event from an open :class:`Evidence`; None when the database has no such event."""
    row = next((r for r in ev.dr_events() if r[0] == event_id), None)
    sb = ev.baseline(event_id)
    if row is None and sb is None:
        return None
    payload: dict[str, Any] = row[4] if row is not None and isinstance(row[4], dict) else {}
    state = row[1] if row is not None else None
    spec = payload.get("spec")
    if spec is None and sb is not None:
        spec = spec_to_dict(sb.spec)
    ack = payload.get("ack")
    results = ev.slots(event_id)
    out: dict[str, Any] = {
        "event_id": event_id, "state": state, "received": row[2] if row else None, "updated": row[3] if row else None,
        "spec": spec, "ack": ack, "ended": payload.get("ended"),
        "baseline": _baseline_dict(sb) if sb is not None else None,
        "intervals": [slot_dict(r) for r in results], "totals": None,
    }  # fmt: skip
    expected = 0
    if sb is not None:
        o = summarise(results, sb.threshold, sb.price_cny_per_kwh)
        stop = truncated(sb.spec, sb.stopped_ts).end
        expected = sum(s < stop for s in sb.baseline.slots)
        out["totals"] = {
            "delivered_kwh": o.delivered_kwh, "committed_kwh": o.committed_kwh, "hours": o.hours,
            "mean_delivered_kw": o.mean_delivered_kw, "response_rate": o.response_rate,
            "threshold": o.threshold, "met": o.met, "settlement_cny": o.settlement_cny, "battery_kwh": o.battery_kwh,
            "shed_kwh": o.shed_kwh, "slots": o.slots, "expected_slots": expected, "complete_slots": o.complete_slots,
        }  # fmt: skip
    met = bool(out["totals"]["met"]) if out["totals"] is not None else False
    out["outcome"] = _outcome(state, ack, spec, sb, len(results) < expected, met)
    return out


def _outcome(state: str | None, ack: Any, spec: Any, sb: StoredBaseline | None, unfinished: bool, met: bool) -> str:
    if state == "rejected":
        return "rejected"
    if state == "cancelled" or (isinstance(spec, dict) and spec.get("cancelled")) or (sb and sb.stopped_ts):
        return "cancelled"
    if isinstance(ack, dict) and ack.get("opt_in") is False:
        return "opted_out"
    if sb is None:
        return "not_assessed" if state in (None, "completed") else "pending"
    if unfinished:
        return "pending"
    return "met" if met else "missed"


def event_ids(ev: Evidence) -> list[str]:
    """Every event the database knows, events table first (in order received), then evidence-only ones."""
    ids = [r[0] for r in ev.dr_events()]
    return ids + [i for i in ev.event_ids() if i not in ids]


def event_report(db: str | os.PathLike[str], event_id: str) -> dict[str, Any] | None:
    """The report of ``event_id`` read from the database file ``db`` (read-only); None if unknown."""
    with Evidence.open_readonly(db) as ev:
        return build_report(ev, event_id)


def all_reports(ev: Evidence) -> list[dict[str, Any]]:
    return [r for i in event_ids(ev) if (r := build_report(ev, i)) is not None]


def write_reports(db: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``<id>.json`` and ``<id>.csv`` per event and ``dr_events.json``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Evidence.open_readonly(db) as ev:
        reports = all_reports(ev)
    paths: list[Path] = []
    for rep in reports:
        stem = _SAFE.sub("_", rep["event_id"])
        p = out / f"{stem}.json"
        p.write_text(dumps(rep), encoding="utf-8")
        paths.append(p)
        paths.append(write_csv(rep, out / f"{stem}.csv"))
    p = out / "dr_events.json"
    p.write_text(dumps(reports), encoding="utf-8")
    paths.append(p)
    return paths


def write_csv(rep: dict[str, Any], path: Path) -> Path:
    """The report's quarter-hours, one row each; shed energy as one ``shed_kwh_<load>`` column per load."""
    loads = sorted({lid for iv in rep["intervals"] for lid in iv["shed_kwh"]})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, *(f"shed_kwh_{lid}" for lid in loads)])
        for iv in rep["intervals"]:
            w.writerow([_cell(iv[c]) for c in CSV_COLUMNS] + [_cell(iv["shed_kwh"].get(lid, 0.0)) for lid in loads])
    return path


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    return str(v)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
