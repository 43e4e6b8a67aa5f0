"""Where sweep points run: local processes, or Ray tasks on an existing cluster.

Both sit behind :class:`Executor`, so the sweep itself (grid, table, files) is one code path. An
executor runs ``fn`` on each task and yields ``(position, outcome)`` as tasks finish, in any order;
``outcome`` is the function's result or the exception that stopped it (a crashed worker process, a
lost Ray node), so one bad point cannot end the sweep. ``fn`` must be a module-level function and the
tasks picklable.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from types import ModuleType
from typing import Any, Protocol, TypeVar

from parkctl.errors import ParkError

T = TypeVar("T")
R = TypeVar("R")
RAY_HINT = "pip install 'parkctl[ray]'"
# Imported once in the fork server, so each worker starts with the replay stack loaded (~3 s saved).
PRELOAD = ["sim.sweep", "sim.replay"]


class Executor(Protocol):
    name: str

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | BaseException]]: ...


def _context() -> multiprocessing.context.BaseContext:
    """forkserver (safe with the threads a replay starts, and workers fork a preloaded server), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


class LocalExecutor:
    """A pool of ``workers`` local processes (default: one per CPU)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | BaseException]]:
        if not tasks:
            return
        workers = min(self.workers, len(tasks))
        with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
            futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                exc = future.exception()
                yield futures[future], (exc if exc is not None else future.result())


def import_ray() -> ModuleType:
    """Ray, imported only when asked for: it is an optional extra, and a large one."""
    try:
        import ray
    except ImportError:
        raise ParkError(f"--ray needs Ray, which is not installed: {RAY_HINT}") from None
    module: ModuleType = ray
    return module


class RayExecutor:
    """Remote tasks on the Ray cluster at ``address`` (``ray.init(address=...)``).

    The cluster's workers need parkctl installed, and ``--out`` must be a path every node can write
    (each point writes its own files where it runs). ``ray`` is injectable for tests of the dispatch.
    """

    name = "ray"

    def __init__(self, address: str, ray: ModuleType | Any = None) -> None:
        self.address = address
        self.ray = ray if ray is not None else import_ray()

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | BaseException]]:
        if not tasks:
            return
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address)
        remote = ray.remote(fn)
        refs = {remote.remote(task): i for i, task in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    outcome: R | BaseException = ray.get(ref)
                except Exception as exc:  # a task error or a lost worker: one failed point
                    outcome = exc
                yield refs[ref], outcome
