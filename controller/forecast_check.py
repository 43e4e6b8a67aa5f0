"""Check every forecast before the planner uses it; repair what can be repaired and say so.

A forecast service can hand back NaN steps or fewer steps than asked. The optimiser must never see
either: NaN would fail its input validation (no plan at all) and a short horizon changes the model's
structure (a rebuild, and a plan that ends early). The checker fills NaN steps by linear
interpolation between the nearest valid ones and missing steps by holding the last valid value, and
reports the problem (``on_check``), so an alarm shows that plans rest on a repaired forecast. A series
with no valid value at all is taken from the last good forecast's mean (PV: zero, the safe side).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

import numpy as np

from controller.forecast import Forecast, Forecaster

CheckListener = Callable[[str | None], None]  # None: the forecast was fine; else what was wrong


def forecast_problems(fc: Forecast, steps: int) -> list[str]:
    """What is wrong with ``fc`` for a request of ``steps`` steps (empty: nothing)."""
    out = []
    series = {"load_kw": fc.load_kw, **{f"pv_kw[{k}]": v for k, v in fc.pv_kw.items()},
              **{f"interruptible_kw[{k}]": v for k, v in fc.interruptible_kw.items()}}  # fmt: skip
    for name, a in series.items():
        arr = np.asarray(a, dtype=float)
        if len(arr) != steps:
            out.append(f"{name}: {len(arr)} of {steps} steps")
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            out.append(f"{name}: {bad} non-finite steps")
    return out


def repair_series(a: np.ndarray, steps: int, default: float) -> np.ndarray:
    """``steps`` finite values: NaN interpolated, missing steps held at the last valid value."""
    arr = np.asarray(a, dtype=float)[:steps]
    idx = np.arange(steps, dtype=float)
    ok = np.flatnonzero(np.isfinite(arr))
    if len(ok) == 0:
        return np.full(steps, default)
    out: np.ndarray = np.interp(idx, ok.astype(float), arr[ok])
    return out


class CheckedForecaster:
    """A :class:`Forecaster` that only ever returns complete, finite forecasts."""

    def __init__(self, inner: Forecaster, on_check: CheckListener | None = None) -> None:
        self.inner, self.on_check = inner, on_check
        self._load_mean_kw = 0.0
        self.repaired = 0

    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        fc = self.inner.forecast(issued_at, start, steps, step_s)
        problems = forecast_problems(fc, steps)
        if self.on_check is not None:
            self.on_check("; ".join(problems) if problems else None)
        if not problems:
            self._load_mean_kw = float(np.mean(fc.load_kw)) if len(fc.load_kw) else 0.0
            return fc
        self.repaired += 1
        return dataclasses.replace(
            fc,
            pv_kw={k: repair_series(v, steps, 0.0) for k, v in fc.pv_kw.items()},
            load_kw=repair_series(fc.load_kw, steps, self._load_mean_kw),
            interruptible_kw={k: repair_series(v, steps, 0.0) for k, v in fc.interruptible_kw.items()},
        )
