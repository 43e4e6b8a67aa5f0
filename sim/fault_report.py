"""``faults.json``: what each fault did and how the controller came through the day.

Per fault: kind, target, window, whether it bit (``hits``: commands ignored, forecasts or solves
spoiled), the alarms it raised (from the controller's database: those of the codes the kind should
raise, on its device, raised between its start and ``ATTRIBUTION_S`` after its end) and ``recovery_s``.
*Normal operation* after a fault means: every alarm the fault raised is cleared, and each alarm clears only on positive
evidence (see :mod:`controller.alarms`): the device read OK or reported fresh again, a command was
acknowledged, a regular (non-fallback) plan was made, a valid forecast came in, a complete process
image after a restart. ``recovery_s`` = the last such clear - the fault's end (0 if all cleared before
it ended; ``null`` if one never cleared).

Totals: violation seconds over the export and import caps from the park's own KPIs, split into those
inside fault windows (each fault's span plus ``SETTLE_S``) and the rest, which the controller alone
must answer for; SoC range against the batteries' bounds; and record counts, what the park saw against
what is in the database: setpoints each simulated device took against ``setpoints`` rows for it (every
setpoint the park took must have a row, except the controller's ack probes, which it counts itself;
a row may be a write that failed), plans made against ``plans``
rows, alarms raised against ``alarms`` rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from sim.fault_inject import SETTLE_S, FaultTimes
from sim.faults import PLANNER_KINDS, Fault

ATTRIBUTION_S = 90.0  # an alarm raised this long after a fault ended still belongs to it (debounce, max age)
# kind -> (code, whose): "target" the fault's device, "site" the site (device ''), "any" any device
EXPECTED_ALARMS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "modbus_down": (("device_read_failed", "target"),), "modbus_slow": (("device_read_failed", "target"),),
    "modbus_garbage": (("device_read_failed", "target"),), "meter_stale": (("meter_stale", "target"),),
    "load_no_ack": (("load_no_ack", "target"),),
    "load_malformed": (("device_stale", "target"), ("mqtt_payload_invalid", "site")),
    "broker_restart": (("broker_disconnected", "site"), ("device_stale", "any"), ("load_no_ack", "any")),
    "forecast_nan": (("forecast_invalid", "site"),), "forecast_gap": (("forecast_invalid", "site"),),
    "optimizer_timeout": (("plan_fallback", "site"),),
    "optimizer_infeasible": (("plan_fallback", "site"),),
    "controller_restart": (("controller_restarted", "site"),),
}  # fmt: skip


@dataclass(frozen=True)
class AlarmRow:
    code: str
    device: str
    raised: datetime
    cleared: datetime | None


@dataclass(frozen=True)
class DayCounts:
    """What the simulated park and the simulator saw, to be found again in the database."""

    setpoints_received: Mapping[str, int]  # device or load id -> setpoints it took
    plans_made: int
    alarms_raised: int
    crashes: int
    probes: Mapping[str, int] = field(default_factory=dict)  # load id -> ack probes (commands with no row)


def read_db(db: Path, since: datetime) -> tuple[list[AlarmRow], dict[str, tuple[int, int]], int]:
    """Alarms, setpoint rows per device (all, ok) and the number of plans from ``since`` on, read-only.

    (A demand-response day's database also holds the simulated prior days: they are not this day's.)"""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        alarms = [
            AlarmRow(c, d, datetime.fromisoformat(r), None if x is None else datetime.fromisoformat(x))
            for c, d, r, x in conn.execute("SELECT code, device, raised_ts, cleared_ts FROM alarms ORDER BY id")
            if datetime.fromisoformat(r) >= since
        ]
        rows = {dev: (n, ok) for dev, n, ok in conn.execute(
            "SELECT device, COUNT(*), SUM(ok) FROM setpoints WHERE unixepoch(ts) >= ? GROUP BY device",
            (since.timestamp(),))}  # fmt: skip
        plans = int(conn.execute("SELECT COUNT(*) FROM plans WHERE unixepoch(created_ts) >= ?",
                                 (since.timestamp(),)).fetchone()[0])  # fmt: skip
    finally:
        conn.close()
    return alarms, rows, plans


def dr_records(db: Path) -> dict[str, Any]:
    """Quarter-hours of every committed demand-response event: expected, stored, complete."""
    from dr.evidence import Evidence, EvidenceError
    from dr.report import build_report as dr_report
    from dr.report import event_ids

    try:
        with Evidence.open_readonly(db) as ev:
            reports = [r for i in event_ids(ev) if (r := dr_report(ev, i)) is not None]
    except EvidenceError:
        return {"events": 0, "expected_slots": 0, "db_slots": 0, "complete_slots": 0, "lost": 0}
    assessed = [r for r in reports if r["totals"] is not None]
    expected = sum(r["totals"]["expected_slots"] for r in assessed)
    stored = sum(len(r["intervals"]) for r in assessed)
    return {"events": len(assessed), "expected_slots": expected, "db_slots": stored,
            "complete_slots": sum(r["totals"]["complete_slots"] for r in assessed),
            "lost": max(0, expected - stored),
            "by_event": {r["event_id"]: {"outcome": r["outcome"], "expected_slots": r["totals"]["expected_slots"],
                                         "db_slots": len(r["intervals"])} for r in assessed}}  # fmt: skip


def violations_in(windows: Sequence[tuple[datetime, datetime]], samples: Sequence[tuple[datetime, float]]) -> float:
    """Violation seconds between consecutive samples that lie inside some window (edges are samples)."""
    total = 0.0
    for (t0, v0), (t1, v1) in pairwise(samples):
        mid = t0 + (t1 - t0) / 2
        if any(a <= mid <= b for a, b in windows):
            total += v1 - v0
    return total


def fault_entry(f: Fault, times: FaultTimes, hits: int | None, alarms: Sequence[AlarmRow], t0: datetime,
                strategy: str) -> dict[str, Any]:  # fmt: skip
    start, end = t0 + f.start, t0 + f.stop
    whose = dict(EXPECTED_ALARMS[f.kind])
    late = end + timedelta(seconds=ATTRIBUTION_S)

    def belongs(a: AlarmRow) -> bool:
        rule = whose.get(a.code)
        device_ok = rule == "any" or a.device == ("" if rule == "site" else f.device)
        return rule is not None and device_ok and start <= a.raised <= late

    mine = [a for a in alarms if belongs(a)]
    applicable = not (f.kind in PLANNER_KINDS and strategy != "mpc")
    cleared = [a.cleared for a in mine]
    cleared_at = None if not mine or None in cleared else max(c for c in cleared if c is not None)
    recovery = None if cleared_at is None else max(0.0, (cleared_at - end).total_seconds())
    note = "" if applicable else f"strategy {strategy} makes no plans: nothing to spoil"
    if applicable and hits == 0:
        note = "the fault never bit (no command, forecast or solve in its window)"
    return {
        "kind": f.kind, "target": f.device or None, "start": start.isoformat(), "end": end.isoformat(),
        "applicable": applicable, "hits": hits, "note": note,
        "alarms": [{"code": a.code, "device": a.device, "raised": a.raised.isoformat(),
                    "cleared": a.cleared.isoformat() if a.cleared else None} for a in mine],
        "alarm_raised_at": min(a.raised for a in mine).isoformat() if mine else None,
        "alarm_cleared_at": cleared_at.isoformat() if cleared_at else None,
        "recovery_s": recovery,
    }  # fmt: skip


def build_report(
    faults: Sequence[Fault], times: Mapping[int, FaultTimes], hits: Mapping[int, int | None], t0: datetime,
    strategy: str, kpis: Mapping[str, float], soc_bounds: tuple[float, float], db: Path, counts: DayCounts,
    samples: Sequence[tuple[datetime, float]], windows: Sequence[tuple[datetime, datetime]],
) -> dict[str, Any]:  # fmt: skip
    alarms, rows, plans = read_db(db, t0)
    entries = [fault_entry(f, times[i], hits.get(i), alarms, t0, strategy) for i, f in enumerate(faults)]
    violation_s = kpis["export_limit_violation_s"] + kpis["import_limit_violation_s"]
    in_faults = violations_in(windows, samples)
    missing = {dev: n - rows.get(dev, (0, 0))[0] - counts.probes.get(dev, 0)
               for dev, n in counts.setpoints_received.items()}  # fmt: skip
    lost = {dev: m for dev, m in missing.items() if m > 0}
    recoveries: dict[str, list[float]] = {}
    for e in entries:
        if e["recovery_s"] is not None:
            recoveries.setdefault(e["kind"], []).append(e["recovery_s"])
    matched = {(a["code"], a["device"], a["raised"]) for e in entries for a in e["alarms"]}
    unexplained = [{"code": a.code, "device": a.device, "raised": a.raised.isoformat()} for a in alarms
                   if (a.code, a.device, a.raised.isoformat()) not in matched]  # fmt: skip
    relevant = [e for e in entries if e["applicable"] and e["hits"] != 0]
    soc_lo, soc_hi = kpis["soc_min_pct"], kpis["soc_max_pct"]
    return {
        "faults": entries,
        "recovery_s_by_kind": {k: {"max": max(v), "mean": sum(v) / len(v)} for k, v in sorted(recoveries.items())},
        "every_fault_alarmed": all(e["alarms"] for e in relevant),
        "every_alarm_cleared": all(a.cleared is not None for a in alarms),
        "unexplained_alarms": unexplained,
        "violations": {
            "export_s": kpis["export_limit_violation_s"], "import_s": kpis["import_limit_violation_s"],
            "during_faults_s": in_faults, "attributable_to_controller_s": max(0.0, violation_s - in_faults),
            "settle_s": SETTLE_S,
        },
        "soc": {"min_pct": soc_lo, "max_pct": soc_hi, "bounds_pct": list(soc_bounds),
                "within_bounds": soc_bounds[0] - 1e-6 <= soc_lo and soc_hi <= soc_bounds[1] + 1e-6},
        "records": {
            "setpoints": {"park_received": sum(counts.setpoints_received.values()),
                          "db_rows": sum(n for n, _ in rows.values()), "db_ok_rows": sum(ok for _, ok in rows.values()),
                          "ack_probes": sum(counts.probes.values()), "lost_by_device": lost,
                          "by_device": {d: {"park_received": counts.setpoints_received.get(d, 0), "db_rows": rows[d][0],
                                            "db_ok_rows": rows[d][1]} for d in sorted(rows)}},
            "plans": {"made": counts.plans_made, "db_rows": plans, "lost": max(0, counts.plans_made - plans)},
            "alarms": {"raised": counts.alarms_raised, "db_rows": len(alarms),
                       "lost": max(0, counts.alarms_raised - len(alarms))},
            "dr_intervals": dr_records(db),
            "controller_crashes": counts.crashes,
        },
    }  # fmt: skip


def write_report(out_dir: Path, report: Mapping[str, Any]) -> Path:
    path = out_dir / "faults.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def summary(report: Mapping[str, Any]) -> str:
    v, soc, r = report["violations"], report["soc"], report["records"]
    sp, pl, al, dr = r["setpoints"], r["plans"], r["alarms"], r["dr_intervals"]
    rec = ", ".join(f"{k} {x['max']:.0f}" for k, x in report["recovery_s_by_kind"].items()) or "none"
    lost = sum(sp["lost_by_device"].values()) + pl["lost"] + al["lost"] + dr["lost"]
    return (
        f"  faults: {len(report['faults'])}, every one alarmed: {report['every_fault_alarmed']}, every alarm"
        f" cleared: {report['every_alarm_cleared']}, unexplained alarms: {len(report['unexplained_alarms'])}\n"
        f"  over the caps: {v['export_s'] + v['import_s']:.0f} s in all, {v['during_faults_s']:.0f} s in fault"
        f" windows, {v['attributable_to_controller_s']:.0f} s attributable to the controller\n"
        f"  SoC {soc['min_pct']:.1f}..{soc['max_pct']:.1f} % within {soc['bounds_pct'][0]:g}..{soc['bounds_pct'][1]:g}"
        f" %: {soc['within_bounds']}\n"
        f"  records lost: {lost} (setpoints park {sp['park_received']} / db {sp['db_rows']}, plans {pl['made']} /"
        f" {pl['db_rows']}, alarms {al['raised']} / {al['db_rows']}, DR quarter-hours {dr['expected_slots']} /"
        f" {dr['db_slots']}; {r['controller_crashes']} controller crashes)\n"
        f"  recovery (max s by kind): {rec}"
    )  # fmt: skip
