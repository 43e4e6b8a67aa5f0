"""Interruptible load: shed/restore rules with reasons, automatic restore, and the rebound."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from sim.interruptible import SheddableLoad, nominal_kw
from sim.scenario import InterruptibleLoad, load_scenario

DAY = date(2026, 7, 15)
NEXT_DAY = date(2026, 7, 16)


def load(**kw: object) -> SheddableLoad:
    cfg: dict[str, object] = {"id": "ch-1", "kind": "chiller", "p_kw": 500.0, "min_on_s": 900.0,
                              "min_off_s": 600.0, "max_shed_s": 3600.0, "max_sheds_per_day": 2,
                              "rebound_factor": 0.4, "rebound_s": 1800.0}  # fmt: skip
    cfg.update(kw)
    return SheddableLoad(InterruptibleLoad.model_validate(cfg))


def run(
    ld: SheddableLoad, t: float, seconds: float, nominal: float = 500.0, dt: float = 1.0
) -> tuple[float, list[float]]:
    out = []
    for _ in range(round(seconds / dt)):
        out.append(ld.step(t, dt, nominal))
        t += dt
    return t, out


def test_a_load_can_be_shed_at_the_start_and_draws_nothing_while_shed() -> None:
    ld = load()
    assert ld.request_shed(0.0, DAY).accepted
    _, out = run(ld, 0.0, 60.0)
    assert out == [0.0] * 60
    assert not ld.running and ld.sheds_on(DAY) == 1


def test_restore_is_refused_before_min_off_s_with_the_reason() -> None:
    ld = load()
    ld.request_shed(0.0, DAY)
    t, _ = run(ld, 0.0, 300.0)
    result = ld.request_restore(t)
    assert not result.accepted
    assert "min_off_s" in result.reason and "300" in result.reason and "600" in result.reason
    t, _ = run(ld, t, 300.0)
    assert ld.request_restore(t).accepted and ld.running


def test_shed_is_refused_before_min_on_s_with_the_reason() -> None:
    ld = load()
    ld.request_shed(0.0, DAY)
    t, _ = run(ld, 0.0, 600.0)
    ld.request_restore(t)
    t, _ = run(ld, t, 899.0)
    result = ld.request_shed(t, DAY)
    assert not result.accepted and "min_on_s" in result.reason and "899" in result.reason
    t, _ = run(ld, t, 1.0)
    assert ld.request_shed(t, DAY).accepted


def test_shed_is_refused_after_max_sheds_per_day_until_the_next_day() -> None:
    ld = load(min_on_s=0.0, min_off_s=0.0)
    t = 0.0
    for _ in range(2):
        assert ld.request_shed(t, DAY).accepted
        t, _ = run(ld, t, 10.0)
        assert ld.request_restore(t).accepted
        t, _ = run(ld, t, 10.0)
    result = ld.request_shed(t, DAY)
    assert not result.accepted and "max_sheds_per_day" in result.reason
    assert ld.sheds_on(NEXT_DAY) == 0
    assert ld.request_shed(t, NEXT_DAY).accepted


def test_double_commands_are_refused_with_reasons() -> None:
    ld = load()
    result = ld.request_restore(0.0)
    assert not result.accepted and "not shed" in result.reason
    ld.request_shed(0.0, DAY)
    result = ld.request_shed(1.0, DAY)
    assert not result.accepted and "already shed" in result.reason


def test_the_load_restores_itself_after_max_shed_s() -> None:
    ld = load(max_shed_s=120.0)
    ld.request_shed(0.0, DAY)
    t, out = run(ld, 0.0, 120.0)
    assert out == [0.0] * 120 and not ld.running
    _, out = run(ld, t, 1.0)
    assert ld.running and out[0] >= 500.0


def test_the_rebound_returns_the_factor_times_the_energy_shed_decaying() -> None:
    ld = load()
    ld.request_shed(0.0, DAY)
    t, _ = run(ld, 0.0, 1200.0)
    assert ld.shed_kws == pytest.approx(500.0 * 1200.0)
    ld.request_restore(t)
    t, out = run(ld, t, 2400.0)
    extra = np.asarray(out) - 500.0
    assert extra.sum() == pytest.approx(0.4 * 500.0 * 1200.0, rel=1e-9)  # kW·s
    assert ld.rebound_kws == pytest.approx(0.4 * 500.0 * 1200.0, rel=1e-9)
    assert extra[0] == pytest.approx(2 * 0.4 * 500.0 * 1200.0 / 1800.0, rel=1e-3)  # twice the mean
    assert np.all(np.diff(extra[:1800]) < 0)  # decaying
    assert np.all(extra[1800:] == 0.0)  # and over after rebound_s


def test_rebound_energy_is_exact_with_uneven_steps() -> None:
    ld = load(rebound_s=100.0, rebound_factor=1.0)
    ld.request_shed(0.0, DAY)
    run(ld, 0.0, 700.0, nominal=300.0)
    ld.request_restore(700.0)
    t, total = 700.0, 0.0
    for dt in [0.3, 7.0, 13.7, 41.0, 0.01, 99.0]:
        total += (ld.step(t, dt, 300.0) - 300.0) * dt
        t += dt
    assert total == pytest.approx(300.0 * 700.0, rel=1e-12)


def test_a_new_shed_forfeits_the_pending_rebound() -> None:
    ld = load(min_on_s=0.0, min_off_s=0.0)
    ld.request_shed(0.0, DAY)
    t, _ = run(ld, 0.0, 100.0)
    ld.request_restore(t)
    t, _ = run(ld, t, 10.0)
    ld.request_shed(t, DAY)
    t, out = run(ld, t, 10.0)
    assert out == [0.0] * 10
    assert 0 < ld.rebound_kws < 0.4 * 500.0 * 100.0


def test_the_energy_counter_includes_the_rebound() -> None:
    ld = load()
    ld.request_shed(0.0, DAY)
    t, _ = run(ld, 0.0, 600.0)
    ld.request_restore(t)
    run(ld, t, 3000.0)
    assert ld.energy_kws == pytest.approx(500.0 * 3000.0 + 0.4 * 500.0 * 600.0, rel=1e-9)


def test_nominal_draw_has_duty_noise_around_the_rating() -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    cfg = sc.interruptible_loads[0]
    p = nominal_kw(sc, cfg, np.arange(0.0, 5 * 86400.0, 60.0))
    rel = p / cfg.p_kw - 1.0
    assert abs(rel.mean()) < 0.01
    assert 0.5 * cfg.duty_noise_pct / 100 < rel.std() < 1.5 * cfg.duty_noise_pct / 100
    assert p.min() >= 0.0
