"""Fixtures of the contract suite: one *flavor* per backend, and pools shared where isolation
allows.

The pattern is CPython's ``create_executor_tests``: every test is written once and runs against
each flavor. A flavor bundles a backend's Pool-style class, its executor, and the classes its
errors are expected to carry. Process-only tests (pickling, worker pids) take ``process_flavor``.
"""

from __future__ import annotations

import concurrent.futures.process
import concurrent.futures.thread
import gc
import multiprocessing.pool
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import shoal
from contract import _tasks

#: Upper bound for anything that should finish at once; only a hang ever reaches it.
LIVE = 60.0
WORKERS = 2


@dataclass(frozen=True)
class Flavor:
    name: str
    pool_cls: type[shoal.Pool]
    executor_cls: type[shoal.Executor]
    #: ``__cause__`` class of a task's exception (None: threads keep the original traceback).
    pool_tb: type[BaseException] | None
    executor_tb: type[BaseException] | None
    #: What every task raises once an initializer failed.
    pool_broken: type[BaseException]
    executor_broken: type[BaseException]

    @property
    def processes(self) -> bool:
        return self.name == "process"

    def pool(self, processes: int = WORKERS, **kwargs: Any) -> shoal.Pool:
        return self.pool_cls(processes, **kwargs)

    def executor(self, max_workers: int = WORKERS, **kwargs: Any) -> shoal.Executor:
        return self.executor_cls(max_workers, **kwargs)  # type: ignore[call-arg]

    def __str__(self) -> str:
        return self.name


FLAVORS = {
    "process": Flavor(
        "process",
        shoal.Pool,
        shoal.ProcessPoolExecutor,
        multiprocessing.pool.RemoteTraceback,
        concurrent.futures.process._RemoteTraceback,
        shoal.PoolBroken,
        concurrent.futures.process.BrokenProcessPool,
    ),
    "thread": Flavor(
        "thread",
        shoal.ThreadPool,
        shoal.ThreadPoolExecutor,
        None,
        None,
        shoal.ThreadPoolBroken,
        concurrent.futures.thread.BrokenThreadPool,
    ),
}


@pytest.fixture(scope="module", params=sorted(FLAVORS))
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return FLAVORS[request.param]


@pytest.fixture(scope="module")
def process_flavor() -> Flavor:
    return FLAVORS["process"]


def _close_pool(pool: shoal.Pool) -> None:
    pool.terminate()
    pool.join()


@pytest.fixture(scope="module")
def pool(flavor: Flavor) -> Iterator[shoal.Pool]:
    """A pool shared by a module's tests: they must leave it idle and running."""
    p = flavor.pool()
    yield p
    _close_pool(p)


@pytest.fixture(scope="module")
def executor(flavor: Flavor) -> Iterator[shoal.Executor]:
    """An executor shared by a module's tests: they must leave it idle and open."""
    ex = flavor.executor()
    yield ex
    ex.shutdown(wait=True)


@pytest.fixture(scope="module")
def process_pool(process_flavor: Flavor) -> Iterator[shoal.Pool]:
    p = process_flavor.pool()
    yield p
    _close_pool(p)


@pytest.fixture(scope="module")
def process_executor(process_flavor: Flavor) -> Iterator[shoal.Executor]:
    ex = process_flavor.executor()
    yield ex
    ex.shutdown(wait=True)


@pytest.fixture
def gate(tmp_path: Any) -> Iterator[_tasks.Gate]:
    """A gate that tasks wait at; always opened at teardown, so a failed test frees the pool."""
    g = _tasks.Gate(tmp_path)
    yield g
    g.open()


def wait_until(predicate: Callable[[], bool], ceiling: float = LIVE) -> bool:
    """Poll ``predicate`` (collecting garbage between tries) until it holds or the ceiling."""
    deadline = time.monotonic() + ceiling
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.005)


def drain(pool: shoal.Pool) -> None:
    """Make sure a shared pool still works and is idle (every worker runs a task)."""
    assert pool.map(_tasks.square, range(2 * WORKERS), chunksize=1) == [
        x * x for x in range(2 * WORKERS)
    ]
