"""Prior days written into the controller's database, for demand-response baselines."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from sim.prior_history import prior_scenario, seed_history
from sim.scenario import load_scenario


async def test_prior_days_fill_every_quarter_hour_before_the_start(tmp_path: Path) -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    db = tmp_path / "controller.db"
    cycles = await seed_history(sc, 2, db, cycle_s=300.0)
    assert cycles == 2 * 24 * 12
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT ts_start, covered_s, import_kwh, export_kwh FROM history_15min"
                            " ORDER BY start_unix").fetchall()  # fmt: skip
    starts = [r[0] for r in rows]
    assert starts[0] == (sc.local_start - timedelta(days=2)).isoformat()
    assert len(rows) == 2 * 96  # the last quarter-hour stays open for the day's controller to continue
    assert all(abs(r[1] - 900) < 1e-6 for r in rows[:-1])
    assert sum(r[2] for r in rows) > 0


def test_prior_days_have_their_own_weather_and_never_touch_an_existing_database(tmp_path: Path) -> None:
    sc = load_scenario("chenzhou-summer-weekday")
    prior = prior_scenario(sc, 3)
    assert prior.start == sc.start - timedelta(days=3) and prior.seed != sc.seed
    db = tmp_path / "controller.db"
    db.write_bytes(b"")
    import asyncio

    with pytest.raises(FileExistsError):
        asyncio.run(seed_history(sc, 1, db))
