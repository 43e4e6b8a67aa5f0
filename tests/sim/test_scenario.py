"""Scenario files: the shipped ones load, wrong ones fail with one line that names the field."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from parkctl.errors import ConfigError
from sim.scenario import available_scenarios, load_scenario, parse_scenario

SHIPPED = ["chenzhou-summer-weekday", "chenzhou-winter-weekday"]


def _shipped_text(name: str) -> str:
    return (resources.files("sim") / "scenarios" / f"{name}.yaml").read_text(encoding="utf-8")


def _broken(tmp_path: Path, mutate: Callable[[dict[str, Any]], object]) -> Path:
    data = yaml.safe_load(_shipped_text(SHIPPED[0]))
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name
    assert sc.start.tzinfo is not None
    assert sc.pv and sc.batteries and sc.interruptible_loads
    assert name in available_scenarios()


def test_a_scenario_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(_shipped_text(SHIPPED[1]), encoding="utf-8")
    assert load_scenario(str(path)).name == SHIPPED[1]


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsite: {name: [unclosed\n", encoding="utf-8")
    message = _error(path)
    assert "not valid YAML" in message and "line" in message


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["pv"][0].update(dc_kwp="big")))
    assert "pv.0.dc_kwp" in message


def test_missing_field_names_the_field(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["site"].pop("timezone")))
    assert "site.timezone" in message and "required" in message.lower()


def test_soc_min_above_soc_max_is_refused(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["batteries"][0].update(soc_min_pct=90, soc_max_pct=80)))
    assert "batteries.0" in message and "soc_min_pct" in message


def test_tariff_gap_names_the_season(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["tariff"]["seasons"][0]["windows"].pop(1)))
    assert "tariff.seasons.0" in message and "gap" in message


def test_bad_shift_time_names_the_field(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["base_load"]["shifts"][0].update(start="8am")))
    assert "base_load.shifts.0.start" in message


def test_start_without_utc_offset_is_refused(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d.update(start="2026-07-15T00:00:00")))
    assert "'start'" in message


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, lambda d: d["grid"].update(import_cap_mw=6.3)))
    assert "grid.import_cap_mw" in message


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("no-such-day")
    message = str(info.value)
    assert "no-such-day" in message
    assert all(name in message for name in SHIPPED)


def test_missing_scenario_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(str(tmp_path / "nowhere.yaml"))


def test_parse_scenario_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError):
        parse_scenario("- just\n- a list\n", "inline")
