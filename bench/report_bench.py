"""Time to write the replay report (figures + HTML) for a finished replay.

Replays the scenario without a report first (or reuses ``--from DIR``, e.g. the output of an earlier
``parkctl replay``), then writes the report ``--repeat`` times and prints the times: the first includes
importing Matplotlib, the rest do not.

    python bench/report_bench.py [--days 1] [--strategies none,rules,mpc,oracle] [--from DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from sim.replay import replay
from sim.report import write_report
from sim.scenario import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="chenzhou-summer-weekday")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--strategies", default="none,rules,mpc,oracle")
    ap.add_argument("--from", dest="source", type=Path, default=None, help="a replay output directory to reuse")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    strategies = args.strategies.split(",")
    out = args.source or Path(tempfile.mkdtemp(prefix="report-bench-"))
    if args.source is None:
        started = time.perf_counter()
        replay(scenario, args.days, strategies, out, report=False)
        print(f"replay of {args.days:g} day(s), {', '.join(strategies)}: {time.perf_counter() - started:.1f} s")
    result = json.loads((out / "kpis.json").read_text(encoding="utf-8"))
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        path = write_report(out, result, scenario, strategies)
        times.append(time.perf_counter() - started)
    size_kb = path.stat().st_size / 1024
    print(f"report {path} ({size_kb:.0f} KiB, {len(list((out / 'plots').glob('*.png')))} PNGs)")
    print(f"write_report: first {times[0]:.2f} s (with the Matplotlib import), "
          f"then median {statistics.median(times[1:] or times):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
