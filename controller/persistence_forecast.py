"""The live controller's default forecaster: tomorrow looks like today, as recorded in the store.

For each planning step it takes the same quarter-hour one day earlier (falling back to a week earlier,
then to the latest recorded quarter-hour) from the 15-minute history. PV is shared among plants by
rating. Crude, but honest and always available; a site with a weather service plugs in its own
:class:`~controller.forecast.Forecaster`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from controller.config import ControllerConfig
from controller.forecast import Forecast
from controller.history import Interval
from controller.store import Store

LOOKBACKS = (timedelta(days=1), timedelta(days=7))


class PersistenceForecaster:
    def __init__(self, store: Store, config: ControllerConfig) -> None:
        self.store = store
        self.rated = {d.id: float(d.rated_kw or 0.0) for d in config.modbus if d.kind == "pv"}
        self.nominal = {ld.id: ld.nominal_kw for ld in config.loads}

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        earliest = start - LOOKBACKS[-1] - timedelta(minutes=15)
        history = {iv.start_us: iv for iv in self.store.intervals(earliest, closed_only=True) if iv.covered_s > 0}
        latest = max(history.values(), key=lambda iv: iv.start_us, default=None)
        pv = np.zeros(steps)
        load = np.zeros(steps)
        for i in range(steps):
            t = start + timedelta(seconds=i * step_s)
            iv = self._lookup(history, t) or latest
            if iv is not None:
                h = iv.covered_s / 3600.0
                pv[i], load[i] = iv.pv_kwh / h, iv.load_kwh / h
        total_rated = sum(self.rated.values()) or 1.0
        per_plant = {pid: pv * r / total_rated for pid, r in self.rated.items()}
        inter = {lid: np.full(steps, kw) for lid, kw in self.nominal.items()}
        return Forecast(issued_at=issued_at, start=start, step_s=step_s, pv_kw=per_plant,
                        load_kw=np.maximum(load, sum(self.nominal.values())), interruptible_kw=inter)

    @staticmethod
    def _lookup(history: dict[int, Interval], t: datetime) -> Interval | None:
        for back in LOOKBACKS:
            key = int((t - back).timestamp() // 900 * 900) * 1_000_000
            if key in history:
                return history[key]
        return None
