"""Progress of a long replay on stderr, in simulated hours per strategy (tqdm).

A replay of two weeks with the planner runs for minutes; a bar per strategy says how far it got and
how long the rest will take. The bar is fed by a controller observer (one tick per control cycle), so it
never adds a task to the simulated clock and cannot change what the replay computes.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from tqdm import tqdm

from controller.cycle import CycleReport

Tick = Callable[[float], None]  # called with the simulated hours done so far
ProgressFactory = Callable[[str, float], AbstractContextManager[Tick | None]]  # (strategy, total hours)
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} h simulated [{elapsed}<{remaining}]"


@dataclass
class HoursObserver:
    """A :class:`controller.cycle.Observer` that reports simulated hours since ``start`` after each cycle."""

    start: datetime
    tick: Tick

    def on_cycle(self, report: CycleReport) -> None:
        self.tick((report.ts - self.start).total_seconds() / 3600.0)


def progress_wanted(requested: bool, stream: TextIO | None = None) -> bool:
    """Bars only for a person watching: asked for, and stderr is a terminal (not a log file or a pipe)."""
    stream = stream or sys.stderr
    return requested and stream.isatty()


def tqdm_progress(enabled: bool, stream: TextIO | None = None) -> ProgressFactory:
    """A factory of per-strategy bars; with ``enabled`` false every bar is ``None`` (no output at all)."""

    @contextmanager
    def bar(strategy: str, hours: float) -> Iterator[Tick | None]:
        if not enabled:
            yield None
            return
        size = shutil.get_terminal_size()  # a pty without a size (CI, script) reads 0 x 0: tqdm would hide the bar
        with tqdm(total=hours, desc=f"{strategy:>6}", unit="h", file=stream or sys.stderr, bar_format=BAR_FORMAT,
                  ncols=min(size.columns, 110), nrows=max(size.lines, 2), leave=True) as t:  # fmt: skip

            def tick(done_h: float) -> None:
                t.update(max(0.0, min(done_h, hours) - t.n))

            yield tick
            t.update(max(0.0, hours - t.n))  # the last cycle starts one cycle before the end

    return bar
