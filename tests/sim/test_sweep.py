"""Parameter sweeps: paths and values checked up front, the grid, real parallel replays, failures kept."""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkctl.cli import main
from parkctl.errors import ConfigError
from sim.replay import replay
from sim.scenario import Scenario, load_scenario
from sim.sweep import PointTask, SweepResult, run_point, sweep
from sim.sweep_exec import LocalExecutor, RayExecutor
from sim.sweep_grid import Param, apply_params, expand_grid, parse_param
from sim.sweep_output import write_parquet

BASE = load_scenario("chenzhou-summer-weekday")


def from_hour(hour: float) -> Scenario:
    return BASE.model_copy(update={"start": BASE.local_start + timedelta(hours=hour)})


def with_capacity(sc: Scenario, capacity_kwh: float) -> Scenario:
    """Built without the sweep's path code, to check it against."""
    return sc.model_copy(update={"batteries": [b.model_copy(update={"capacity_kwh": capacity_kwh})
                                               for b in sc.batteries]})  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- parsing and validation -------------------------------------------------------------------------
def test_param_values_are_yaml_scalars() -> None:
    assert parse_param("battery.capacity_kwh=2000, 4000.5") == Param("battery.capacity_kwh", (2000, 4000.5))
    assert parse_param("weather.ambient_mean_c=null,28").values == (None, 28)
    assert parse_param("site.name=a b").values == ("a b",)
    for bad in ("battery.capacity_kwh", "=1,2", "battery.capacity_kwh=", "battery.capacity_kwh=1,,2"):
        with pytest.raises(ConfigError, match="--param"):
            parse_param(bad)


def test_paths_reach_every_element_one_element_or_a_mapping() -> None:
    every = apply_params(BASE, {"battery.capacity_kwh": 7000})  # the spelling
    assert every == with_capacity(BASE, 7000) == apply_params(BASE, {"batteries.capacity_kwh": 7000})
    one = apply_params(BASE, {"batteries.1.capacity_kwh": 7000})
    assert [b.capacity_kwh for b in one.batteries] == [BASE.batteries[0].capacity_kwh, 7000]
    assert apply_params(BASE, {"tariff.ratios.peak": 2}).tariff.ratios["peak"] == 2.0
    assert apply_params(BASE, {"grid.import_cap_kw": "5000"}).grid.import_cap_kw == 5000.0  # coerced by pydantic
    assert apply_params(BASE, {}) == BASE


@pytest.mark.parametrize(
    ("param", "reason"),
    [
        ("battery.capacty_kwh=1", "no field 'capacty_kwh'"),
        ("batteries.2.capacity_kwh=1", "no index 2"),
        ("grid=1", "group of fields"),
        ("site.name.x=1", "has no field 'x'"),
        ("nonsense=1", "no field 'nonsense'"),
        ("battery..capacity_kwh=1", "not a dotted path"),
        ("battery.capacity_kwh=2000,-5", "field 'batteries.0.capacity_kwh': Input should be greater than 0"),
        ("grid.import_cap_kw=lots", "field 'grid.import_cap_kw': Input should be a valid number"),
        ("battery.soc_min_pct=50", "soc_init_pct must lie within"),
    ],
)
def test_a_bad_path_or_value_is_one_error_naming_the_param(param: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        expand_grid(BASE, [parse_param(param)])
    message = str(err.value)
    assert message.startswith(f"--param {param.partition('=')[0]}=") and reason in message
    assert "\n" not in message


def test_values_that_clash_only_together_fail_at_their_grid_point() -> None:
    params = [parse_param("battery.soc_min_pct=10,20"), parse_param("battery.soc_init_pct=30,15")]
    with pytest.raises(ConfigError, match=r"grid point battery.soc_min_pct=20, battery.soc_init_pct=15: .*soc_init"):
        expand_grid(BASE, params)


def test_grid_is_the_product_with_seeds_innermost() -> None:
    params = [parse_param("battery.capacity_kwh=2000,8000"), parse_param("grid.import_cap_kw=5000,6000,7000")]
    points = expand_grid(BASE, params, seeds=[1, 2])
    assert len(points) == 2 * 3 * 2 and [p.index for p in points] == list(range(12))
    assert [(p.params["battery.capacity_kwh"], p.params["grid.import_cap_kw"], p.seed) for p in points[:4]] == [
        (2000, 5000, 1), (2000, 5000, 2), (2000, 6000, 1), (2000, 6000, 2)]  # fmt: skip
    last = points[-1]
    assert last.scenario.seed == 2 and last.scenario.grid.import_cap_kw == 7000
    assert all(b.capacity_kwh == 8000 for b in last.scenario.batteries)
    assert [p.seed for p in expand_grid(BASE, params[:1])] == [BASE.seed, BASE.seed]
    assert [p.params for p in expand_grid(BASE, [], seeds=[3, 4])] == [{}, {}]
    with pytest.raises(ConfigError, match="given twice"):
        expand_grid(BASE, [params[0], params[0]])
    with pytest.raises(ConfigError, match="--seeds"):
        expand_grid(BASE, [parse_param("seed=1,2")], seeds=[1])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(1, 20_000), min_size=1, max_size=3), min_size=1, max_size=3),
       st.none() | st.lists(st.integers(0, 99), min_size=1, max_size=3))  # fmt: skip
def test_every_point_carries_its_values(values: list[list[int]], seeds: list[int] | None) -> None:
    paths = ["batteries.0.capacity_kwh", "batteries.1.capacity_kwh", "base_load.peak_kw"][: len(values)]
    points = expand_grid(BASE, [Param(p, tuple(v)) for p, v in zip(paths, values, strict=True)], seeds)
    assert len(points) == math.prod(len(v) for v in values) * (len(seeds) if seeds else 1)
    for p in points:
        got = [p.scenario.batteries[0].capacity_kwh, p.scenario.batteries[1].capacity_kwh, p.scenario.base_load.peak_kw]
        assert got[: len(paths)] == [p.params[k] for k in paths]
        assert p.scenario.seed == p.seed and p.seed in (seeds or [BASE.seed])


# -- real sweeps in worker processes ---------------------------------------------------------------
KPIS = ("operating_cost_cny", "grid_import_kwh", "green_utilization", "peak_import_kw", "battery_charge_kwh")


@pytest.fixture(scope="module")
def two_points(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepResult, Path]:
    out = tmp_path_factory.mktemp("sweep")
    points = expand_grid(from_hour(10), [parse_param("battery.capacity_kwh=1000,8000")])
    return sweep(points, 3 / 24, ["rules"], out, LocalExecutor(workers=2), cycle_s=60), out


def test_sweep_writes_a_row_per_point_and_strategy(two_points: tuple[SweepResult, Path]) -> None:
    result, out = two_points
    rows = read_csv(out / "sweep.csv")
    assert [(r["point"], r["battery.capacity_kwh"], r["strategy"], r["error"]) for r in rows] == [
        ("0", "1000", "rules", ""), ("1", "8000", "rules", "")]  # fmt: skip
    assert all(r["seed"] == str(BASE.seed) and float(r["hours"]) == 3.0 for r in rows)
    assert rows[0]["savings_captured"] == ""  # undefined without none, mpc and oracle
    # the parameter reached the run: a larger battery shaves more of the peak
    assert float(rows[1]["peak_import_kw"]) < float(rows[0]["peak_import_kw"])
    for i in (0, 1):
        assert (out / "points" / str(i) / "rules" / "timeseries.csv").is_file()
    assert (out / "sweep.png").stat().st_size > 10_000 and result.failed == 0


def test_a_point_in_a_worker_equals_a_direct_replay(two_points: tuple[SweepResult, Path], tmp_path: Path) -> None:
    _, out = two_points
    row = read_csv(out / "sweep.csv")[1]
    direct = replay(with_capacity(from_hour(10), 8000), 3 / 24, ["rules"], tmp_path, cycle_s=60)
    total = direct["rules"]["total"]
    assert {k: float(row[k]) for k in total} == total  # every KPI, bit for bit (CSV floats round-trip)


def test_a_failing_point_is_recorded_and_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "points").mkdir()
    (tmp_path / "points" / "1").write_text("in the way")  # point 1 cannot write its results
    points = expand_grid(from_hour(11), [], seeds=[5, 6, 7])
    result = sweep(points, 1 / 24, ["none"], tmp_path, LocalExecutor(workers=2), cycle_s=60)
    rows = read_csv(tmp_path / "sweep.csv")
    assert [r["seed"] for r in rows] == ["5", "6", "7"] and result.failed == 1
    assert rows[1]["error"].startswith(("FileExistsError", "NotADirectoryError")) and rows[1]["load_kwh"] == ""
    assert rows[0]["error"] == rows[2]["error"] == "" and float(rows[2]["load_kwh"]) > 0


def test_a_point_that_raises_returns_its_error_and_keeps_the_traceback(tmp_path: Path) -> None:
    task = PointTask(4, from_hour(12), 1 / 24, ("bogus",), tmp_path / "points" / "4", 60.0)
    result = run_point(task)
    assert result.index == 4 and result.totals == {}
    assert result.error is not None and result.error.startswith("ValueError: unknown strategy 'bogus'")
    assert "Traceback" in (tmp_path / "points" / "4" / "error.txt").read_text()


def test_parquet_holds_the_same_table(two_points: tuple[SweepResult, Path], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")  # optional: not a dependency
    result, _ = two_points
    assert write_parquet(result.rows, tmp_path / "sweep.parquet")
    assert pq.read_table(tmp_path / "sweep.parquet").to_pylist() == result.rows


# -- the Ray path's dispatch, on a stand-in for the ray module (not Ray itself) ----------------------
@dataclass(eq=False)  # hashable by identity, like an ObjectRef
class FakeRef:
    n: int
    task: Any
    fn: Callable[[Any], Any]


class FakeRay:
    """The four calls RayExecutor makes, in-process: tasks finish in reverse order; one raises in get."""

    def __init__(self, fail_index: int) -> None:
        self.fail_index = fail_index
        self.address: str | None = None
        self.submitted: list[int] = []
        self.initialized = False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, address: str) -> None:
        self.initialized, self.address = True, address

    def remote(self, fn: Callable[[Any], Any]) -> Any:
        fake = self

        class Remote:
            def remote(self, task: Any) -> FakeRef:
                fake.submitted.append(task.index)
                return FakeRef(len(fake.submitted) - 1, task, fn)

        return Remote()

    def wait(self, pending: list[Any], num_returns: int) -> tuple[list[Any], list[Any]]:
        return pending[-num_returns:], pending[:-num_returns]

    def get(self, ref: FakeRef) -> Any:
        if ref.n == self.fail_index:
            raise RuntimeError("node lost")
        return ref.fn(ref.task)


def test_ray_dispatch_keeps_grid_order_and_records_a_lost_task(tmp_path: Path) -> None:
    fake = FakeRay(fail_index=1)
    points = expand_grid(from_hour(12), [parse_param("battery.capacity_kwh=1000,4000,8000")])
    finished: list[int] = []
    result = sweep(points, 0.25 / 24, ["rules"], tmp_path, RayExecutor("ray://head:10001", ray=fake), 60,
                   on_result=lambda p, r: finished.append(p.index))  # fmt: skip
    assert fake.address == "ray://head:10001" and fake.submitted == [0, 1, 2] and finished == [2, 1, 0]
    assert [r.index for r in result.results] == [0, 1, 2]
    assert [r["error"] for r in result.rows] == [None, "RuntimeError: node lost", None]
    assert result.rows[0]["hours"] == result.rows[2]["hours"] == pytest.approx(0.25)


# -- command line ----------------------------------------------------------------------------------
def test_cli_rejects_a_bad_param_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--param", "battery.capacity_kwh=2000,0", "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    assert "--param battery.capacity_kwh=0: field 'batteries.0.capacity_kwh'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_cli_without_ray_says_how_to_get_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--param", "battery.capacity_kwh=2000", "--ray", "auto", "--out", str(tmp_path)])
    assert code == 2 and "pip install 'parkctl[ray]'" in capsys.readouterr().err
