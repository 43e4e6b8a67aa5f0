"""Files of a sweep: ``sweep.csv`` always, ``sweep.parquet`` if pyarrow is importable, ``sweep.png``.

pyarrow and matplotlib are optional (matplotlib is the ``plot`` extra): without them the file is
skipped with a log line, the CSV is the record.
"""

from __future__ import annotations

import csv
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PLOT_KPIS = (("operating_cost_cny", "operating cost CNY"), ("green_utilization", "green utilization"),
             ("peak_import_kw", "peak import kW (15 min)"))  # fmt: skip


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Floats as repr (exact round trip), None as an empty cell."""
    columns = list(rows[0]) if rows else []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Write when pyarrow is importable and the columns have one type each; say whether it did."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        log.info("pyarrow is not installed: no %s", path.name)
        return False
    try:
        pq.write_table(pa.Table.from_pylist(list(rows)), path)
    except (pa.ArrowException, ValueError, TypeError) as exc:  # e.g. a parameter swept over mixed types
        log.warning("could not write %s: %s", path, exc)
        return False
    return True


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot(rows: Sequence[dict[str, Any]], path: Path, x_key: str, strategies: Sequence[str]) -> bool:
    """KPIs against ``x_key``, a line per strategy: the mean over seeds and other parameters, and
    their min-max band when there are several. Points that failed are left out."""
    try:  # the object API renders with Agg and leaves pyplot's global backend alone
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib is not installed (pip install 'parkctl[plot]'): no %s", path.name)
        return False
    ok = [r for r in rows if r.get("error") is None]
    xs = list(dict.fromkeys(r[x_key] for r in rows))
    numeric = _numeric(xs)
    position = {x: (x if numeric else i) for i, x in enumerate(xs)}
    fig = Figure(figsize=(7, 2.6 * len(PLOT_KPIS)))
    axes = fig.subplots(len(PLOT_KPIS), 1, sharex=True, squeeze=False)
    banded = False
    for ax, (kpi, label) in zip(axes[:, 0], PLOT_KPIS, strict=True):
        for s in strategies:
            groups: dict[Any, list[float]] = {}
            for r in ok:
                if r["strategy"] == s and r.get(kpi) is not None:
                    groups.setdefault(r[x_key], []).append(float(r[kpi]))
            if not groups:
                continue
            keys = [x for x in xs if x in groups]
            px = [position[x] for x in keys]
            ax.plot(px, [statistics.fmean(groups[x]) for x in keys], marker="o", label=s)
            if any(len(v) > 1 for v in groups.values()):
                banded = True
                ax.fill_between(px, [min(groups[x]) for x in keys], [max(groups[x]) for x in keys], alpha=0.2)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    if ok:
        axes[0, 0].legend(loc="best")
    axes[-1, 0].set_xlabel(x_key)
    if not numeric:
        axes[-1, 0].set_xticks(range(len(xs)), [str(x) for x in xs])
    failed = len({r["point"] for r in rows}) - len({r["point"] for r in ok})
    notes = (["line: mean, band: min-max over seeds and other parameters"] if banded else []) + (
        [f"{failed} failed point(s) left out"] if failed else []
    )
    axes[0, 0].set_title(f"sweep over {x_key}" + (f"\n({'; '.join(notes)})" if notes else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: Path, x_key: str | None,
                  strategies: Sequence[str]) -> list[Path]:  # fmt: skip
    """Write every file it can; return the paths written. The plot's x is ``x_key`` (else the seed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "sweep.csv"]
    write_csv(rows, written[0])
    if write_parquet(rows, out_dir / "sweep.parquet"):
        written.append(out_dir / "sweep.parquet")
    if rows and plot(rows, out_dir / "sweep.png", x_key or "seed", strategies):
        written.append(out_dir / "sweep.png")
    return written
