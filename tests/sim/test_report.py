"""The replay report: one self-contained HTML file, figures embedded and beside it, KPIs as in kpis.json."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from parkctl.cli import main
from sim.progress import progress_wanted, tqdm_progress
from sim.replay import replay, run_strategy
from sim.report import KPI_ROWS, write_report
from sim.scenario import Scenario, load_scenario

STRATEGIES = ["none", "rules"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def from_hour(hour: float) -> Scenario:
    sc = load_scenario("chenzhou-summer-weekday")
    return sc.model_copy(update={"start": sc.local_start + timedelta(hours=hour)})


class Page(HTMLParser):
    """What the browser would fetch: every src/href, and the images by id."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.refs += [(tag, k, v) for k, v in a.items() if k in ("src", "href", "srcset", "data", "poster")]
        if tag == "img":
            self.images[a.get("id", "")] = a.get("src", "")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report")
    replay(from_hour(10), 0.25, STRATEGIES, out, cycle_s=60)  # writes report.html by default
    return out, json.loads((out / "kpis.json").read_text(encoding="utf-8"))


def page(out: Path) -> tuple[str, Page]:
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = Page()
    parser.feed(html)
    return html, parser


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_is_self_contained(replayed: tuple[Path, dict[str, Any]]) -> None:
    out, _ = replayed
    html, parsed = page(out)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    assert "url(" not in html and "@import" not in html  # no CSS fetches either
    assert parsed.refs and all(t == "img" and k == "src" and v.startswith("data:image/png;base64,")
                               for t, k, v in parsed.refs)  # fmt: skip
    assert len(parsed.images) == 2 + 3 * len(STRATEGIES)  # KPI bars, price, then 3 per strategy
    for src in parsed.images.values():
        width, height = png_size(base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True))
        assert width > 0 and height > 0


def test_plots_beside_the_report_are_the_embedded_ones(replayed: tuple[Path, dict[str, Any]]) -> None:
    out, _ = replayed
    _, parsed = page(out)
    files = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert files == sorted(i.removeprefix("plot-") for i in parsed.images)
    for name in files:
        embedded = base64.b64decode(parsed.images[f"plot-{name}"].removeprefix("data:image/png;base64,"))
        assert (out / "plots" / f"{name}.png").read_bytes() == embedded


def test_kpi_table_holds_the_numbers_of_kpis_json(replayed: tuple[Path, dict[str, Any]]) -> None:
    out, kpis = replayed
    html, _ = page(out)
    table = html[html.index("<h2>KPIs</h2>") : html.index("<h2>Per day</h2>")]
    for label, key, fmt in KPI_ROWS:
        row = re.search(rf'<tr data-key="{key}">(.*?)</tr>', table, re.S)
        assert row is not None, key
        cells = re.findall(r'<td class="[^"]*" data-value="([^"]+)">([^<]*)</td>', row.group(1))
        assert len(cells) == len(STRATEGIES), label
        for strategy, (value, text) in zip(STRATEGIES, cells, strict=True):
            assert float(value) == kpis[strategy]["total"][key]
            assert text == fmt.format(kpis[strategy]["total"][key])
    assert "n/a (needs none, mpc and oracle)" in table  # savings_captured is None without mpc and oracle
    days = html[html.index("<h2>Per day</h2>") :]
    cost = kpis["rules"]["days"][0]["operating_cost_cny"]
    assert f'data-value="{cost!r}"' in days


def test_report_is_deterministic_and_shows_dr_windows(replayed: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, kpis = replayed
    first = (out / "report.html").read_bytes()
    sc = from_hour(10)
    write_report(out, kpis, sc, STRATEGIES, cycle_s=60)
    assert (out / "report.html").read_bytes() == first
    for strategy in STRATEGIES:  # a copy of the replay, so the module's report stays as replay() wrote it
        (tmp_path / strategy).mkdir()
        (tmp_path / strategy / "timeseries.csv").write_bytes((out / strategy / "timeseries.csv").read_bytes())
    window = (sc.local_start + timedelta(hours=2), sc.local_start + timedelta(hours=3), "import cap 3 MW")
    write_report(tmp_path, kpis, sc, STRATEGIES, [window], cycle_s=60)
    assert "import cap 3 MW 07-15 12:00–13:00" in (tmp_path / "report.html").read_text(encoding="utf-8")
    for name in ("price", "rules_power"):  # shaded: the figures change
        assert (tmp_path / "plots" / f"{name}.png").read_bytes() != (out / "plots" / f"{name}.png").read_bytes()
    assert (tmp_path / "plots" / "rules_soc.png").read_bytes() == (out / "plots" / "rules_soc.png").read_bytes()


def test_progress_ticks_simulated_hours_without_changing_the_run() -> None:
    ticks: list[float] = []
    with_bar = asyncio.run(run_strategy(from_hour(10), "rules", 0.5, cycle_s=60, progress=ticks.append))
    without = asyncio.run(run_strategy(from_hour(10), "rules", 0.5, cycle_s=60))
    assert with_bar.total == without.total
    assert ticks == sorted(ticks) and ticks[0] == 0.0
    assert ticks[-1] == pytest.approx(0.5 - 1 / 60)
    assert len(ticks) == with_bar.cycles


def test_progress_bar_goes_to_the_stream_only_when_enabled() -> None:
    stream = io.StringIO()
    assert not progress_wanted(True, stream)  # not a terminal
    with tqdm_progress(True, stream)("mpc", 48.0) as tick:
        assert tick is not None
        tick(12.0)
    assert "h simulated" in stream.getvalue() and "100%" in stream.getvalue()
    quiet = io.StringIO()
    with tqdm_progress(False, quiet)("mpc", 48.0) as tick:
        assert tick is None
    assert quiet.getvalue() == ""


def test_cli_no_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", "--days", "0.05", "--strategies", "none", "--out", str(tmp_path), "--no-report"])
    assert code == 0
    assert (tmp_path / "kpis.json").is_file()
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "plots").exists()
    captured = capsys.readouterr()
    assert "report in" not in captured.out and "h simulated" not in captured.err
