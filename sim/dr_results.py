"""What a simulated demand-response day leaves beside ``kpis.json``.

- ``dr_events.json``: every event's report (as ``parkctl dr report`` writes it from the controller's
  database: the event, the park's answer, the baseline with the history rows it came from, the
  quarter-hours, totals and outcome);
- ``dr/<event>.json`` and ``dr/<event>.csv``: the same per event;
- ``dr_calls.json``: what the simulated grid company sent and the acknowledgement it got back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dr.report import write_reports
from sim.grid_company import SentCall


def _call(c: SentCall) -> dict[str, Any]:
    ack = c.ack
    return {
        "call_id": c.call_id, "action": c.action, "sent_at": c.sent_at.isoformat(),
        "ack": None if ack is None else {"status": ack.status, "opt_in": ack.opt_in, "reason": ack.reason,
                                         "capacity_kw": ack.capacity_kw, "ts": ack.ts.isoformat()},
    }  # fmt: skip


def write_dr_results(out_dir: Path, db: Path, sent: list[SentCall]) -> list[dict[str, Any]]:
    """Write the files above; returns the event reports."""
    write_reports(db, out_dir / "dr")
    shutil.copyfile(out_dir / "dr" / "dr_events.json", out_dir / "dr_events.json")
    calls = [_call(c) for c in sent]
    (out_dir / "dr_calls.json").write_text(json.dumps(calls, indent=2) + "\n", encoding="utf-8")
    reports: list[dict[str, Any]] = json.loads((out_dir / "dr_events.json").read_text(encoding="utf-8"))
    return reports


def dr_summary(reports: list[dict[str, Any]]) -> str:
    """One line per event: outcome, committed and delivered energy, response rate."""
    lines = ["  demand response:"]
    for r in reports:
        t = r.get("totals") or {}
        rate = t.get("response_rate")
        lines.append(
            f"    {r['event_id']:<20} {r.get('outcome', '?'):<10}"
            f" committed {t.get('committed_kwh', 0.0):7.0f} kWh, delivered {t.get('delivered_kwh', 0.0):7.0f} kWh,"
            f" response rate {'n/a' if rate is None else f'{rate:.2f}'}"
        )
    return "\n".join(lines)
