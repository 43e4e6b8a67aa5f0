"""Replay figures as PNG bytes, for the offline report (:mod:`sim.report`).

Every figure is drawn on its own Agg canvas (no display, no pyplot state shared between calls) at a
fixed size and dpi, with no software/time metadata, so the same rows give the same bytes: a report
can be diffed and cached. Powers follow the house convention (grid import +, battery discharge +).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from parkctl.errors import ParkError

Array = npt.NDArray[np.float64]
Window = tuple[datetime, datetime, str]  # (start, end, label), e.g. a demand-response event

DPI = 100
WIDE = (11.0, 3.8)  # inches: 1100 x 380 px
LEGEND_IN = 1.75  # right margin of time plots, for the legend
PNG_METADATA: dict[str, str | None] = {"Software": None}  # no version or time: stable bytes
PERIOD_COLORS = {"valley": "#2a9d8f", "flat": "#d9d9d9", "peak": "#f4a261", "critical_peak": "#e63946"}
STRATEGY_COLORS = {"none": "#8d99ae", "rules": "#457b9d", "mpc": "#e76f51", "oracle": "#2a9d8f"}
FLOW_COLORS = {"pv": "#f2c12e", "discharge": "#2a9d8f", "import": "#8d99ae", "charge": "#8fd3c7",
               "export": "#f7e08f"}  # fmt: skip
# (title, key, unit, scale): the panels of the KPI comparison
KPI_PANELS = (
    ("operating cost", "operating_cost_cny", "CNY", 1.0), ("grid import", "grid_import_kwh", "MWh", 1e-3),
    ("green utilisation", "green_utilization", "%", 100.0), ("PV curtailed", "pv_curtailed_kwh", "kWh", 1.0),
    ("peak import (15 min)", "peak_import_kw", "kW", 1.0), ("CO2", "co2_kg", "t", 1e-3),
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One strategy's 60-s rows (:meth:`sim.park.Park.timeseries`) as columns; ``x`` is ``ts`` as Matplotlib dates."""

    ts: list[datetime]
    period: list[str]
    cols: dict[str, Array]
    x: Array

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]]) -> Series:
        if not rows:
            raise ParkError("nothing to plot: the run recorded no complete minute (a report needs at least one)")
        names = [k for k in rows[0] if k not in ("ts", "period")]
        cols = {k: np.array([float(r[k]) for r in rows], dtype=np.float64) for k in names}  # type: ignore[arg-type]
        ts = [datetime.fromisoformat(str(r["ts"])) for r in rows]
        return cls(ts, [str(r.get("period", "")) for r in rows], cols, _dates(ts))

    @classmethod
    def from_csv(cls, path: Path) -> Series:
        with path.open(newline="", encoding="utf-8") as fh:
            return cls.from_rows(list(csv.DictReader(fh)))

    def __getitem__(self, name: str) -> Array:
        return self.cols[name]

    @property
    def battery_ids(self) -> list[str]:
        return [k.removeprefix("bess_").removesuffix("_soc_pct") for k in self.cols if k.endswith("_soc_pct")
                and k.startswith("bess_")]  # fmt: skip

    def energy_kwh(self, name: str) -> float:
        """Energy of a power column, from its 60-s means."""
        return float(self[name].sum()) / 60.0


# -- plumbing ----------------------------------------------------------------------------------------
def _dates(ts: Sequence[datetime]) -> Array:
    return np.asarray(mdates.date2num(list(ts)), dtype=np.float64)  # type: ignore[no-untyped-call]


def _figure(size: tuple[float, float]) -> Figure:
    """Fixed margins, no layout engine: faster, and the same layout whatever the numbers."""
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)  # explicit Agg: never a display backend
    return fig


def _time_figure(height: float) -> tuple[Figure, Axes]:
    """A time plot with fixed margins (inches), so the time axes of all figures line up in the report."""
    width = WIDE[0]
    fig = _figure((width, height))
    fig.subplots_adjust(left=0.8 / width, right=1 - LEGEND_IN / width, top=1 - 0.35 / height, bottom=0.55 / height)
    return fig, fig.add_subplot()


def _legend(fig: Figure, handles: Sequence[Any] | None = None) -> None:
    """The legend in the fixed right margin."""
    kw: dict[str, Any] = {"handles": handles} if handles is not None else {}
    anchor = (1 - (LEGEND_IN - 0.1) / WIDE[0], 1 - 0.3 / fig.get_figheight())
    fig.legend(loc="upper left", bbox_to_anchor=anchor, fontsize=8, frameon=False, **kw)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buf.getvalue()


def _time_axis(ax: Axes, s: Series) -> None:
    tz = s.ts[0].tzinfo
    locator = mdates.AutoDateLocator(tz=tz, minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    ax.set_xlim(float(s.x[0]), float(s.x[-1]))
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)


def _runs(values: Sequence[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal values as (first index, end index exclusive, value)."""
    out: list[tuple[int, int, str]] = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], i + 1, v)
        else:
            out.append((i, i + 1, v))
    return out


def shade_periods(ax: Axes, s: Series, alpha: float) -> None:
    """Tariff periods as background bands (flat stays white)."""
    x = [*s.x.tolist(), float(2 * s.x[-1] - s.x[-2]) if len(s.x) > 1 else float(s.x[-1])]  # + the last row's end
    for i, j, kind in _runs(s.period):
        if kind in PERIOD_COLORS and kind != "flat":
            ax.axvspan(x[i], x[j], color=PERIOD_COLORS[kind], alpha=alpha, lw=0)


def shade_windows(ax: Axes, windows: Sequence[Window]) -> None:
    """Demand-response (or any labelled) windows: hatched, labelled at the top."""
    for start, end, label in windows:
        a, b = _dates([start, end]).tolist()
        ax.axvspan(a, b, facecolor="none", edgecolor="#6d597a", hatch="///", lw=0.8)
        ax.text(a, 0.97, f" {label} ", transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=8,
                color="#6d597a", clip_on=True, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip


# -- figures -----------------------------------------------------------------------------------------
def power_flows_png(s: Series, title: str, windows: Sequence[Window] = ()) -> bytes:
    """What served the load, stacked up to it; where surplus went (charge, export), stacked below zero."""
    load, pv = s["load_kw"], s["pv_kw"]
    discharge, charge = np.maximum(s["battery_kw"], 0.0), np.maximum(-s["battery_kw"], 0.0)
    pv_load = np.minimum(pv, load)
    bat_load = np.minimum(discharge, load - pv_load)
    grid_load = np.maximum(load - pv_load - bat_load, 0.0)
    fig, ax = _time_figure(WIDE[1])
    shade_periods(ax, s, alpha=0.08)
    ax.stackplot(s.x, pv_load, bat_load, grid_load, labels=["PV → load", "battery → load", "grid → load"],
                 colors=[FLOW_COLORS["pv"], FLOW_COLORS["discharge"], FLOW_COLORS["import"]], lw=0)  # fmt: skip
    ax.stackplot(s.x, -charge, -np.maximum(-s["grid_kw"], 0.0), labels=["battery charge", "export"],
                 colors=[FLOW_COLORS["charge"], FLOW_COLORS["export"]], lw=0)  # fmt: skip
    ax.plot(s.x, load, color="black", lw=0.9, label="load")
    ax.plot(s.x, s["grid_kw"], color="#1d3557", lw=0.6, ls=(0, (3, 2)), alpha=0.8, label="grid (meter)")
    ax.axhline(0.0, color="black", lw=0.5)
    shade_windows(ax, windows)
    _time_axis(ax, s)
    ax.set_ylabel("kW")
    ax.set_title(title, loc="left", fontsize=11)
    _legend(fig)
    return _png(fig)


def soc_png(s: Series, title: str, bounds: Mapping[str, tuple[float, float]] | None = None) -> bytes:
    """State of charge of each battery, with its configured floor and ceiling when given."""
    fig, ax = _time_figure(3.0)
    shade_periods(ax, s, alpha=0.08)
    palette = ["#1d3557", "#e76f51", "#2a9d8f", "#6d597a", "#f4a261", "#457b9d"]
    for n, b in enumerate(s.battery_ids):
        color = palette[n % len(palette)]  # dashes too: batteries run in step often overlap exactly
        style = ("-", "--", ":")[n % 3]
        ax.plot(s.x, s[f"bess_{b}_soc_pct"], color=color, lw=2.2 - 0.5 * min(n, 2), ls=style, label=b)
        for level in (bounds or {}).get(b, ()):
            ax.axhline(level, color=color, lw=0.6, ls=":")
    _time_axis(ax, s)
    ax.set_ylim(0.0, 100.0)
    ax.set_ylabel("SoC %")
    ax.set_title(title, loc="left", fontsize=11)
    if s.battery_ids:
        _legend(fig)
    return _png(fig)


def price_png(s: Series, title: str, windows: Sequence[Window] = ()) -> bytes:
    """The import price with the tariff periods behind it and demand-response windows over it."""
    fig, ax = _time_figure(3.0)
    shade_periods(ax, s, alpha=0.25)
    ax.step(s.x, s["price_cny_per_kwh"], where="post", color="black", lw=1.1, label="import price")
    shade_windows(ax, windows)
    _time_axis(ax, s)
    ax.set_ylim(0.0, float(s["price_cny_per_kwh"].max()) * 1.15 + 1e-9)
    ax.set_ylabel("CNY/kWh")
    ax.set_title(title, loc="left", fontsize=11)
    seen = [k for k in PERIOD_COLORS if k in set(s.period)]
    handles: list[Any] = [
        Patch(facecolor=PERIOD_COLORS[k], edgecolor="#bbbbbb", alpha=0.25, label=k.replace("_", " ")) for k in seen
    ]
    if windows:
        handles.append(Patch(facecolor="none", edgecolor="#6d597a", hatch="///", label="DR window"))
    _legend(fig, [*ax.get_legend_handles_labels()[0], *handles])
    return _png(fig)


def curtailment_png(s: Series, title: str) -> bytes:
    """PV available against PV generated; the gap (curtailment) filled red."""
    fig, ax = _time_figure(3.0)
    avail, gen = s["pv_available_kw"], s["pv_kw"]
    ax.fill_between(s.x, 0.0, gen, color=FLOW_COLORS["pv"], lw=0, label="PV generated")
    ax.fill_between(s.x, gen, avail, where=avail > gen, color="#e63946", alpha=0.6, lw=0, label="curtailed")
    ax.plot(s.x, avail, color="#7a5c00", lw=0.7, label="PV available")
    _time_axis(ax, s)
    ax.set_ylim(bottom=0.0)
    ax.set_ylabel("kW")
    curtailed = max(0.0, s.energy_kwh("pv_available_kw") - s.energy_kwh("pv_kw"))
    ax.set_title(f"{title}: {curtailed:,.0f} kWh curtailed", loc="left", fontsize=11)
    _legend(fig)
    return _png(fig)


def kpi_bars_png(totals: Mapping[str, Mapping[str, float]]) -> bytes:
    """The headline KPIs side by side, one panel each (units differ), one bar per strategy."""
    fig = _figure((11.0, 5.2))
    axes = fig.subplots(2, 3, gridspec_kw={"left": 0.06, "right": 0.99, "top": 0.93, "bottom": 0.06,
                                           "hspace": 0.32, "wspace": 0.22})  # fmt: skip
    names = list(totals)
    for ax, (title, key, unit, scale) in zip(axes.flat, KPI_PANELS, strict=True):
        values = [totals[n][key] * scale for n in names]
        bars = ax.bar(names, values, color=[STRATEGY_COLORS.get(n, "#999999") for n in names])
        ax.bar_label(bars, labels=[f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}" for v in values], fontsize=8,
                     padding=2)  # fmt: skip
        ax.set_title(f"{title} ({unit})", fontsize=10)
        ax.margins(y=0.18)
        ax.tick_params(labelsize=9)
        ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
    return _png(fig)
