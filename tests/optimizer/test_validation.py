"""Bad forecasts are rejected by pydantic with the field and the step index in the error location."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from optimizer.inputs import BatteryInput, DeferrableInput, InterruptibleInput, OptimizerInputs, PvInput
from tests.optimizer.builders import inputs


def _locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def test_nan_in_base_load_names_field_and_step() -> None:
    load = [10.0] * 6
    load[3] = math.nan
    with pytest.raises(ValidationError) as exc:
        inputs(load, [0.5] * 6)
    assert _locs(exc) == [("base_load_kw", 3)]
    assert "finite" in str(exc.value)


def test_missing_pv_value_names_plant_and_step() -> None:
    with pytest.raises(ValidationError) as exc:
        inputs([10.0] * 4, [0.5] * 4, pv=[PvInput(id="a", available_kw=[1.0] * 4),
                                          {"id": "b", "available_kw": [1.0, None, 2.0, 3.0]}])  # fmt: skip
    assert _locs(exc) == [("pv", 1, "available_kw", 1)]


def test_nan_in_numpy_forecast_and_infinity_are_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        PvInput(id="a", available_kw=np.array([1.0, np.inf, np.nan]))
    assert _locs(exc) == [("available_kw", 1), ("available_kw", 2)]


def test_numpy_arrays_are_accepted() -> None:
    inp = inputs(np.full(4, 10.0).tolist(), [0.5] * 4, pv=[PvInput(id="a", available_kw=np.ones(4))])
    assert inp.pv[0].available_kw == [1.0] * 4


def test_wrong_length_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"pv\.0\.available_kw has 3 values; expected n_steps=4"):
        inputs([10.0] * 4, [0.5] * 4, pv=[PvInput(id="a", available_kw=[1.0] * 3)])


def test_negative_forecast_names_the_step() -> None:
    with pytest.raises(ValidationError, match=r"base_load_kw\[2\] = -1.0 is negative"):
        inputs([1.0, 1.0, -1.0], [0.5] * 3)


def test_device_rules_are_checked() -> None:
    with pytest.raises(ValidationError, match="soc_min_pct must be below soc_max_pct"):
        BatteryInput(id="b", capacity_kwh=1, p_charge_max_kw=1, p_discharge_max_kw=1, soc_init_pct=50,
                     soc_min_pct=60, soc_max_pct=40)  # fmt: skip
    with pytest.raises(ValidationError, match="min_shed_s cannot exceed max_shed_s"):
        InterruptibleInput(id="l", running_kw=1, max_shed_s=60, min_shed_s=120, max_sheds_per_day=1)
    with pytest.raises(ValidationError, match="p_min_kw cannot exceed p_max_kw"):
        DeferrableInput(id="d", energy_kwh=1, p_min_kw=5, p_max_kw=1, window_start=0, window_end=2)
    with pytest.raises(ValidationError, match="beyond n_steps"):
        inputs([1.0] * 3, [0.5] * 3, deferrable_loads=[DeferrableInput(id="d", energy_kwh=1, p_max_kw=1,
                                                                       window_start=0, window_end=5)])  # fmt: skip
    with pytest.raises(ValidationError, match="device ids must be unique"):
        inputs(
            [1.0] * 2,
            [0.5] * 2,
            pv=[PvInput(id="x", available_kw=[0, 0])],
            deferrable_loads=[DeferrableInput(id="x", energy_kwh=0, p_max_kw=1, window_start=0, window_end=1)],
        )


def test_horizon_longer_than_48_hours_is_rejected() -> None:
    with pytest.raises(ValidationError, match="exceeds 48 h"):
        inputs([1.0] * 49, [0.5] * 49)


def test_inputs_round_trip_through_json() -> None:
    inp = inputs([1.0] * 3, [0.5] * 3, pv=[PvInput(id="a", available_kw=[0.0, 1.5, 0.0])])
    assert OptimizerInputs.model_validate_json(inp.model_dump_json()) == inp


def test_carbon_intensity_defaults_per_step() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    inp = OptimizerInputs(start=datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")), step_s=900, n_steps=3,
                          base_load_kw=[1, 1, 1], import_price_cny_per_kwh=[1, 1, 1], export_price_cny_per_kwh=[0] * 3,
                          import_cap_kw=[9] * 3, export_cap_kw=[0] * 3)  # fmt: skip
    assert inp.carbon_kg_per_kwh == [0.5366] * 3
