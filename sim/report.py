"""The replay report: one self-contained HTML file that opens offline (``DIR/report.html``).

Every figure is embedded as a base64 ``data:`` URI (and also written beside the report as
``DIR/plots/*.png`` for slides); the styles are inline; nothing is fetched from the network, so the
file can be mailed or opened on an air-gapped site laptop. Built with the standard library only.
The report holds nothing that varies between runs (no wall times, no dates of writing): the same
replay gives the same bytes.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from parkctl.errors import ParkError
from sim.scenario import Scenario

Window = tuple[datetime, datetime, str]  # (start, end, label) of a demand-response window

# (label, key, format) of the side-by-side KPI table; formats also used by the per-day table
KPI_ROWS = (
    ("bill CNY (operating + demand share)", "bill_cny", "{:,.0f}"),
    ("operating cost CNY", "operating_cost_cny", "{:,.0f}"), ("energy cost CNY", "energy_cost_cny", "{:,.0f}"),
    ("shed cost CNY", "shed_cost_cny", "{:,.0f}"), ("battery degradation CNY", "battery_degradation_cny", "{:,.0f}"),
    ("demand charge CNY/month", "demand_charge_cny", "{:,.0f}"), ("grid import kWh", "grid_import_kwh", "{:,.0f}"),
    ("grid export kWh", "grid_export_kwh", "{:,.1f}"), ("green utilisation", "green_utilization", "{:.1%}"),
    ("self-sufficiency", "self_sufficiency", "{:.1%}"), ("PV curtailed kWh", "pv_curtailed_kwh", "{:,.0f}"),
    ("battery charge kWh", "battery_charge_kwh", "{:,.0f}"), ("load shed kWh", "load_shed_kwh", "{:,.0f}"),
    ("peak import kW (15 min)", "peak_import_kw", "{:,.0f}"), ("CO2 kg", "co2_kg", "{:,.0f}"),
    ("export violation s", "export_limit_violation_s", "{:,.0f}"),
    ("import violation s", "import_limit_violation_s", "{:,.0f}"),
)  # fmt: skip
DAY_KEYS = (
    "operating_cost_cny", "energy_cost_cny", "grid_import_kwh", "grid_export_kwh", "green_utilization",
    "pv_curtailed_kwh", "peak_import_kw", "co2_kg", "export_limit_violation_s", "import_limit_violation_s",
)  # fmt: skip
CAPTURED = (("savings captured (bill)", "savings_captured"), ("grey import captured", "grey_import_captured"))
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1140px;
 color:#222;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#666}
table{border-collapse:collapse;margin:6px 0 12px}th,td{padding:3px 10px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:600}img{max-width:100%;height:auto;display:block;margin:6px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}dd{margin:0}
"""
# which way is better, for the bold "best" cell of a KPI row (rows not named here have no best)
BETTER = {"bill_cny": min, "operating_cost_cny": min, "energy_cost_cny": min, "grid_import_kwh": min,
          "pv_curtailed_kwh": min, "peak_import_kw": min, "co2_kg": min, "export_limit_violation_s": min,
          "import_limit_violation_s": min, "green_utilization": max, "self_sufficiency": max}  # fmt: skip


def require_plotting() -> None:
    """Fail early (before hours of replay) when matplotlib, an optional extra, is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ParkError("the replay report needs matplotlib: pip install 'parkctl[plot]', or pass --no-report")


def parkctl_version() -> str:
    try:
        return version("parkctl")
    except PackageNotFoundError:
        return "unknown"


def write_report(
    out_dir: Path, result: Mapping[str, Any], scenario: Scenario, strategies: Sequence[str],
    windows: Sequence[Window] = (), *, cycle_s: float | None = None,
) -> Path:  # fmt: skip
    """Draw the figures of a finished replay in ``out_dir`` and write ``out_dir/report.html``.

    ``result`` is what :func:`sim.replay.replay` returned (or ``kpis.json``); the time series are
    read back from ``out_dir/<strategy>/timeseries.csv``. ``windows`` are (start, end, label)
    demand-response windows to shade.
    """
    require_plotting()
    from sim.plots import Series, curtailment_png, kpi_bars_png, power_flows_png, price_png, soc_png

    series = {s: Series.from_csv(out_dir / s / "timeseries.csv") for s in strategies}
    bounds = {b.id: (b.soc_min_pct, b.soc_max_pct) for b in scenario.batteries}
    pngs: dict[str, tuple[str, bytes]] = {
        "kpis": ("KPIs by strategy", kpi_bars_png({s: result[s]["total"] for s in strategies})),
        "price": ("import price and tariff periods", price_png(series[strategies[0]], "import price", windows)),
    }
    for s in strategies:
        pngs[f"{s}_power"] = (f"{s}: power flows", power_flows_png(series[s], f"{s}: power flows", windows))
        pngs[f"{s}_soc"] = (f"{s}: state of charge", soc_png(series[s], f"{s}: state of charge", bounds))
        pngs[f"{s}_pv"] = (f"{s}: PV available and generated", curtailment_png(series[s], f"{s}: PV"))
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for name, (_, data) in pngs.items():
        (plots / f"{name}.png").write_bytes(data)
    path = out_dir / "report.html"
    path.write_text(render_html(result, scenario, strategies, pngs, windows, cycle_s), encoding="utf-8")
    return path


# -- HTML --------------------------------------------------------------------------------------------
def _img(pngs: Mapping[str, tuple[str, bytes]], name: str) -> str:
    alt, data = pngs[name]
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{uri}" alt="{escape(alt)}" id="plot-{escape(name)}">'


def _cell(value: object, fmt: str, best: bool = False) -> str:
    if not isinstance(value, int | float):
        return '<td class="n">–</td>'
    cls = "n best" if best else "n"
    return f'<td class="{cls}" data-value="{value!r}">{escape(fmt.format(value))}</td>'


def kpi_table(result: Mapping[str, Any], strategies: Sequence[str]) -> str:
    """Strategies side by side; the best value of a row in bold where better has a direction."""
    head = "".join(f"<th>{escape(s)}</th>" for s in strategies)
    rows = [f"<tr><th>KPI</th>{head}</tr>"]
    for label, key, fmt in KPI_ROWS:
        values = [result[s]["total"].get(key) for s in strategies]
        nums = [v for v in values if isinstance(v, int | float)]
        best = BETTER[key](nums) if key in BETTER and len(nums) > 1 and min(nums) < max(nums) else None
        cells = "".join(_cell(v, fmt, v == best) for v in values)
        rows.append(f'<tr data-key="{key}"><th>{escape(label)}</th>{cells}</tr>')
    for label, key in CAPTURED:
        v = result.get(key)
        why = "none and oracle equal" if {"none", "mpc", "oracle"} <= set(strategies) else "needs none, mpc and oracle"
        text = f"n/a ({why})" if v is None else f"{v:.1%}"
        attr = "" if v is None else f' data-value="{v!r}"'
        cell = f'<td colspan="{len(strategies)}"{attr}>{text}</td>'
        rows.append(f'<tr data-key="{key}"><th>{escape(label)}</th>{cell}</tr>')
    return "<table>" + "\n".join(rows) + "</table>"


def day_table(result: Mapping[str, Any], strategies: Sequence[str], scenario: Scenario) -> str:
    """One row per (day, strategy)."""
    fmts = {key: fmt for _, key, fmt in KPI_ROWS}
    labels = {key: label for label, key, _ in KPI_ROWS}
    head = "".join(f"<th>{escape(labels[k])}</th>" for k in DAY_KEYS)
    rows = [f"<tr><th>day</th><th>strategy</th><th>hours</th>{head}</tr>"]
    n_days = max(len(result[s]["days"]) for s in strategies)
    for d in range(n_days):
        date = (scenario.local_start + timedelta(days=d)).strftime("%Y-%m-%d %a")
        for s in strategies:
            days = result[s]["days"]
            if d >= len(days):
                continue
            k = days[d]
            cells = "".join(_cell(k.get(key), fmts[key]) for key in DAY_KEYS)
            rows.append(f"<tr><td>{escape(date)}</td><td>{escape(s)}</td>{_cell(k['hours'], '{:.1f}')}{cells}</tr>")
    return "<table>" + "\n".join(rows) + "</table>"


def _run_facts(result: Mapping[str, Any], scenario: Scenario, strategies: Sequence[str],
               windows: Sequence[Window], cycle_s: float | None) -> str:  # fmt: skip
    hours = max(float(result[s]["total"]["hours"]) for s in strategies)
    facts = [
        ("scenario", f"{scenario.name}: {scenario.description}"), ("site", scenario.site.name),
        ("start", scenario.local_start.isoformat()), ("days", f"{hours / 24:g} ({hours:g} h simulated)"),
        ("seed", str(scenario.seed)), ("control cycle", "scenario default" if cycle_s is None else f"{cycle_s:g} s"),
        ("physics step", f"{scenario.physics_step_s:g} s"), ("strategies", ", ".join(strategies)),
        ("DR windows", "; ".join(f"{label} {a:%m-%d %H:%M}–{b:%H:%M}" if a.date() == b.date()
                                 else f"{label} {a:%m-%d %H:%M}–{b:%m-%d %H:%M}" for a, b, label in windows) or "none"),
        ("parkctl version", parkctl_version()),
    ]  # fmt: skip
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>"


def _bound(result: Mapping[str, Any]) -> str:
    bound = result.get("bound_bill_cny")
    if not isinstance(bound, int | float):
        return ""
    return (f'<p id="bound">Perfect-foresight bound: <b>{bound:,.0f} CNY</b>. A linear relaxation of the park over '
            "the realised days: no run that keeps the grid limits can cost less, whatever controls it.</p>")


def _run_table(result: Mapping[str, Any], strategies: Sequence[str]) -> str:
    keys = (("control cycles", "cycles"), ("decide errors", "decide_errors"), ("re-plans", "replans"),
            ("fallback plans", "fallback_plans"))  # fmt: skip
    head = "".join(f"<th>{escape(s)}</th>" for s in strategies)
    rows = [f"<tr><th></th>{head}</tr>"]
    for label, key in keys:
        rows.append(f"<tr><th>{label}</th>" + "".join(_cell(result[s]["run"].get(key), "{:,}") for s in strategies)
                    + "</tr>")  # fmt: skip
    return "<table>" + "\n".join(rows) + "</table>"


def render_html(
    result: Mapping[str, Any], scenario: Scenario, strategies: Sequence[str], pngs: Mapping[str, tuple[str, bytes]],
    windows: Sequence[Window] = (), cycle_s: float | None = None,
) -> str:  # fmt: skip
    """The whole page as one string."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>parkctl replay: {escape(scenario.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Replay of {escape(scenario.name)}</h1>",
        f'<p class="muted">{escape(", ".join(strategies))} over the same simulated park, weather and load; '
        "KPIs are what the park did, measured at the physics step. Grid import and battery discharge are "
        "positive.</p>",
        "<h2>What was run</h2>", _run_facts(result, scenario, strategies, windows, cycle_s),
        "<h2>KPIs</h2>", kpi_table(result, strategies), _img(pngs, "kpis"),
        '<p class="muted">Operating cost = energy cost + shed cost + battery degradation; the bill adds the '
        "replay's share of the month (days ÷ days in the month) of the monthly demand charge on the highest "
        "15-minute import. Savings captured = (none − mpc) / (none − oracle), on the bill.</p>", _bound(result),
        "<h2>Per day</h2>", day_table(result, strategies, scenario),
        "<h2>Tariff</h2>", _img(pngs, "price"),
    ]  # fmt: skip
    for s in strategies:
        parts += [f'<h2 id="strategy-{escape(s)}">Strategy {escape(s)}</h2>', _img(pngs, f"{s}_power"),
                  _img(pngs, f"{s}_soc"), _img(pngs, f"{s}_pv")]  # fmt: skip
    parts += ["<h2>Runs</h2>", _run_table(result, strategies), "</body></html>"]
    return "\n".join(parts) + "\n"
