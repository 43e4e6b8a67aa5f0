"""Battery: SoC bounds whatever the commands, AC-side accounting, derating, ramps and the watchdog."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.battery import Bess
from sim.scenario import Battery


def battery(**kw: float) -> Battery:
    cfg: dict[str, float | str] = {"id": "b1", "capacity_kwh": 1000.0, "p_charge_max_kw": 500.0,
                                   "p_discharge_max_kw": 600.0, "soc_init_pct": 50.0}  # fmt: skip
    cfg.update(kw)
    return Battery.model_validate(cfg)


def run(b: Bess, t: float, seconds: float, dt: float = 1.0) -> tuple[float, list[float]]:
    out = []
    for _ in range(round(seconds / dt)):
        out.append(b.step(t, dt))
        t += dt
    return t, out


def test_charging_stores_through_eta_and_discharging_draws_through_eta() -> None:
    b = Bess(battery(eta_charge=0.9, eta_discharge=0.8, watchdog_s=1e6, ramp_kw_per_s=1e4))
    b.set_power(0.0, -400.0)
    t, out = run(b, 0.0, 900.0)
    assert set(out) == {-400.0}
    assert b.charge_kwh == pytest.approx(100.0)
    assert b.energy_kwh == pytest.approx(500.0 + 90.0)
    b.set_power(t, 400.0)
    run(b, t, 900.0)
    assert b.discharge_kwh == pytest.approx(100.0)
    assert b.energy_kwh == pytest.approx(590.0 - 125.0)


def test_setpoints_are_clamped_to_the_ratings() -> None:
    b = Bess(battery())
    b.set_power(0.0, 5000.0)
    assert b.setpoint_kw == 600.0
    b.set_power(0.0, -5000.0)
    assert b.setpoint_kw == -500.0
    with pytest.raises(ValueError, match="b1"):
        b.set_power(0.0, float("nan"))
    with pytest.raises(ValueError, match="revert_s"):
        b.set_power(0.0, 100.0, revert_s=-5.0)


def test_power_ramps_at_the_configured_rate() -> None:
    b = Bess(battery(ramp_kw_per_s=100.0))
    b.set_power(0.0, 450.0)
    _, out = run(b, 0.0, 6.0)
    assert out == pytest.approx([100.0, 200.0, 300.0, 400.0, 450.0, 450.0])


def test_the_watchdog_idles_the_battery_after_watchdog_s() -> None:
    b = Bess(battery(watchdog_s=60.0))
    b.set_power(0.0, 300.0)
    t, out = run(b, 0.0, 60.0)
    assert out[-1] == 300.0 and not b.watchdog_tripped
    t, out = run(b, t, 1.0)
    assert out == [0.0]
    assert b.watchdog_tripped and b.setpoint_kw == 0.0
    b.set_power(t, -200.0)  # a fresh setpoint clears the flag
    assert not b.watchdog_tripped
    _, out = run(b, t, 5.0)
    assert out[-1] == -200.0


def test_refreshed_setpoints_keep_the_watchdog_quiet() -> None:
    b = Bess(battery(watchdog_s=30.0))
    t = 0.0
    for _ in range(10):
        b.set_power(t, 250.0)
        t, out = run(b, t, 20.0)
    assert not b.watchdog_tripped and out[-1] == 250.0


def test_a_revert_time_sent_with_the_setpoint_overrides_the_watchdog() -> None:
    b = Bess(battery(watchdog_s=600.0))
    b.set_power(0.0, 300.0, revert_s=10.0)
    _, out = run(b, 0.0, 12.0)
    assert out[9] == 300.0 and out[10] == 0.0
    assert b.watchdog_tripped


def test_the_watchdog_is_not_armed_before_the_first_setpoint() -> None:
    b = Bess(battery(watchdog_s=5.0))
    run(b, 0.0, 100.0)
    assert not b.watchdog_tripped


def test_power_derates_linearly_near_empty_and_full() -> None:
    b = Bess(battery(soc_init_pct=12.5, soc_min_pct=10.0, soc_max_pct=90.0, derate_band_pct=5.0))
    charge, discharge = b.available_kw()
    assert discharge == pytest.approx(600.0 * 0.5)
    assert charge == 500.0
    b = Bess(battery(soc_init_pct=89.0, soc_min_pct=10.0, soc_max_pct=90.0, derate_band_pct=5.0))
    charge, discharge = b.available_kw()
    assert charge == pytest.approx(500.0 * 0.2)
    assert discharge == 600.0


def test_a_full_discharge_stops_at_soc_min() -> None:
    b = Bess(battery(soc_init_pct=20.0, soc_min_pct=10.0, watchdog_s=1e6))
    b.set_power(0.0, 600.0)
    run(b, 0.0, 4 * 3600.0, dt=5.0)
    assert 10.0 <= b.soc_pct < 10.05
    assert b.p_kw < 5.0
    assert b.e_low >= 100.0


def test_without_a_band_the_battery_stops_exactly_at_the_bound() -> None:
    b = Bess(battery(soc_init_pct=80.0, soc_max_pct=90.0, derate_band_pct=0.0, watchdog_s=1e6))
    b.set_power(0.0, -500.0)
    _, out = run(b, 0.0, 3600.0, dt=60.0)
    assert b.soc_pct == pytest.approx(90.0, abs=1e-9)
    assert b.soc_pct <= 90.0
    assert out[-1] == 0.0


command = st.tuples(
    st.floats(-2000.0, 2000.0),  # setpoint, beyond the ratings on purpose
    st.integers(1, 40),  # steps held
    st.sampled_from([0.5, 1.0, 10.0, 60.0, 900.0]),  # step length
    st.one_of(st.none(), st.floats(1.0, 600.0)),  # revert time
    st.booleans(),  # send the setpoint or let the watchdog act
)


@settings(max_examples=200, deadline=None)
@given(
    cmds=st.lists(command, min_size=1, max_size=30),
    soc_init=st.floats(5.0, 95.0),
    band=st.sampled_from([0.0, 2.0, 5.0, 20.0]),
    eta=st.tuples(st.floats(0.8, 1.0), st.floats(0.8, 1.0)),
    ramp=st.sampled_from([5.0, 100.0, 5000.0]),
)
def test_soc_never_leaves_its_bounds_and_ac_accounting_closes(
    cmds: list[tuple], soc_init: float, band: float, eta: tuple[float, float], ramp: float
) -> None:
    cfg = battery(soc_init_pct=soc_init, soc_min_pct=5.0, soc_max_pct=95.0, derate_band_pct=band,
                  eta_charge=eta[0], eta_discharge=eta[1], ramp_kw_per_s=ramp, watchdog_s=120.0)  # fmt: skip
    b = Bess(cfg)
    e0 = b.energy_kwh
    t = 0.0
    for p, held, dt, revert, send in cmds:
        if send:
            b.set_power(t, p, revert)
        for _ in range(held):
            b.step(t, dt)
            t += dt
            assert 5.0 <= b.soc_pct <= 95.0
            assert -cfg.p_charge_max_kw <= b.p_kw <= cfg.p_discharge_max_kw
    stored = b.energy_kwh - e0
    assert stored == pytest.approx(b.charge_kwh * eta[0] - b.discharge_kwh / eta[1], abs=1e-6)
    assert 5.0 <= 100 * b.e_low / cfg.capacity_kwh <= 100 * b.e_high / cfg.capacity_kwh <= 95.0
