"""What the planner needs to know about the hours ahead, and who can tell it.

A :class:`Forecast` holds interval means on the planner's step grid. The live controller and the
simulator plug in different :class:`Forecaster` implementations; the planner cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Forecast:
    """Interval means from ``start``, ``step_s`` apart: PV available per plant and site load.

    ``load_kw`` is the whole site consumption with every interruptible load running;
    ``interruptible_kw`` is each interruptible load's share of it (what shedding it would save).
    """

    issued_at: datetime
    start: datetime
    step_s: int
    pv_kw: dict[str, np.ndarray]
    load_kw: np.ndarray
    interruptible_kw: dict[str, np.ndarray]

    @property
    def steps(self) -> int:
        return len(self.load_kw)

    def time_of(self, step: int) -> datetime:
        return self.start + timedelta(seconds=step * self.step_s)


class Forecaster(Protocol):
    def forecast(self, issued_at: datetime, start: datetime, steps: int, step_s: int) -> Forecast:
        """A forecast issued at ``issued_at`` for ``steps`` intervals of ``step_s`` from ``start``."""
        ...
