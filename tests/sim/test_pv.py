"""PV plant: available power from irradiance, and the inverter following an active-power limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.pv import Inverter, available_ac_kw
from sim.scenario import PvPlant

PLANT = PvPlant(id="pv-x", dc_kwp=1200.0, ac_kw=1000.0, ramp_pct_per_s=10.0)


def test_available_power_is_zero_without_sun_and_capped_at_the_inverter() -> None:
    poa = np.array([0.0, 200.0, 600.0, 1400.0])
    p = available_ac_kw(PLANT, poa, np.full(4, 25.0))
    assert p[0] == 0.0
    assert 0.0 < p[1] < p[2] < PLANT.ac_kw
    assert p[3] == PLANT.ac_kw
    # 200 W/m² at 25 °C air: cell 25 + 200/800 x (45 - 20) = 31.25 °C; -0.4 %/°C above 25 °C
    assert p[1] == pytest.approx(1200 * 0.2 * 0.86 * (1 - 0.004 * 6.25), rel=1e-9)


def test_heat_lowers_the_output() -> None:
    poa = np.array([800.0])
    cool = available_ac_kw(PLANT, poa, np.array([5.0]))[0]
    hot = available_ac_kw(PLANT, poa, np.array([38.0]))[0]
    assert hot < cool
    # cells run 25 °C above the air at 800 W/m², so the derates are 1 - 0.004 x 5 and 1 - 0.004 x 38
    assert hot / cool == pytest.approx((1 - 0.004 * 38) / (1 - 0.004 * 5), rel=1e-9)


def _run(inv: Inverter, t: float, seconds: int, avail: float) -> tuple[float, list[float]]:
    out = []
    for _ in range(seconds):
        out.append(inv.step(t, 1.0, avail))
        t += 1.0
    return t, out


def test_a_lower_limit_ramps_the_output_down_from_where_it_is() -> None:
    inv = Inverter(PLANT)
    t, out = _run(inv, 0.0, 3, 600.0)
    assert out == [600.0] * 3
    inv.set_limit(t, 30.0)
    t, out = _run(inv, t, 5, 600.0)
    assert out == pytest.approx([500.0, 400.0, 300.0, 300.0, 300.0])  # 10 % of 1000 kW per second
    assert inv.limit_pct == 30.0


def test_lifting_the_limit_ramps_back_up_to_what_is_available() -> None:
    inv = Inverter(PLANT)
    inv.set_limit(0.0, 20.0)
    t, _ = _run(inv, 0.0, 10, 900.0)
    inv.set_limit(t, None)
    t, out = _run(inv, t, 9, 900.0)
    assert out == pytest.approx([300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 900.0, 900.0])
    assert inv.limit_pct is None


def test_a_limit_above_the_output_changes_nothing() -> None:
    inv = Inverter(PLANT)
    _run(inv, 0.0, 2, 400.0)
    inv.set_limit(2.0, 60.0)
    _, out = _run(inv, 2.0, 3, 400.0)
    assert out == [400.0] * 3
    _, out = _run(inv, 5.0, 3, 800.0)  # the sun comes out: capped at the limit at once
    assert out == [600.0] * 3


def test_the_limit_reverts_after_its_timeout() -> None:
    inv = Inverter(PLANT)
    inv.set_limit(0.0, 50.0, revert_s=10.0)
    t, out = _run(inv, 0.0, 10, 900.0)
    assert max(out[5:]) == pytest.approx(500.0)
    assert inv.limit_pct == 50.0
    t, out = _run(inv, t, 6, 900.0)
    assert inv.limit_pct is None
    assert out == pytest.approx([600.0, 700.0, 800.0, 900.0, 900.0, 900.0])


def test_a_refreshed_limit_does_not_revert() -> None:
    inv = Inverter(PLANT)
    t = 0.0
    for _ in range(5):
        inv.set_limit(t, 50.0, revert_s=10.0)
        t, _ = _run(inv, t, 8, 900.0)
    assert inv.limit_pct == 50.0 and inv.p_kw == pytest.approx(500.0)


@pytest.mark.parametrize("bad", [-1.0, 100.5, float("nan"), float("inf")])
def test_an_impossible_limit_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="pv-x"):
        Inverter(PLANT).set_limit(0.0, bad)


def test_a_non_positive_revert_time_is_refused() -> None:
    with pytest.raises(ValueError, match="revert_s"):
        Inverter(PLANT).set_limit(0.0, 50.0, revert_s=0.0)


def test_the_energy_counter_integrates_the_output() -> None:
    inv = Inverter(PLANT)
    inv.step(0.0, 1800.0, 400.0)
    inv.step(1800.0, 0.5, 800.0)
    assert inv.energy_kwh == pytest.approx(200.0 + 800.0 * 0.5 / 3600.0)


commands = st.lists(
    st.tuples(
        st.floats(0.0, PLANT.ac_kw),  # available
        st.one_of(st.none(), st.floats(0.0, 100.0)),  # new limit or lift
        st.booleans(),  # whether to send it
        st.integers(1, 30),  # seconds held
        st.sampled_from([0.25, 1.0, 2.0]),  # step length
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_output_never_exceeds_available_nor_the_limit_once_ramped(seq: list[tuple]) -> None:
    inv = Inverter(PLANT)
    ramp_kw = PLANT.ramp_pct_per_s / 100 * PLANT.ac_kw
    ramp_s = 100.0 / PLANT.ramp_pct_per_s
    t, since, p_prev = 0.0, -1e9, 0.0
    for avail, limit, send, held, dt in seq:
        if send:
            eff_before = inv.effective_limit_kw
            inv.set_limit(t, limit)
            since = t
            # a command may only pull the effective limit down, and never below the present output
            assert p_prev - 1e-9 <= inv.effective_limit_kw <= eff_before + 1e-9
        for _ in range(held):
            eff_prev = inv.effective_limit_kw
            p = inv.step(t, dt, avail)
            t += dt
            assert 0.0 <= p <= avail + 1e-9
            assert abs(inv.effective_limit_kw - eff_prev) <= ramp_kw * dt + 1e-9
            assert p >= min(avail, p_prev - ramp_kw * dt) - 1e-9  # no faster than the ramp, unless the sun
            if inv.limit_pct is not None and t - since >= ramp_s:
                assert p <= PLANT.ac_kw * inv.limit_pct / 100.0 + 1e-9
            p_prev = p
