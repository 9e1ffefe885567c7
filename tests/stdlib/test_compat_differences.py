"""Pins the differences from ``multiprocessing.Pool`` that docs/compat.md lists and no other test
shows, and the private attributes of the stdlib's Pool that shoal's facade offers (code written
for ``multiprocessing``, CPython's own tests among it, reads them)."""

from __future__ import annotations

import multiprocessing.pool
import os
import threading
from concurrent.futures import CancelledError

import pytest

import shoal

#: Upper bound for what should happen at once; only a hang reaches it.
LIVE = 60.0

#: A module global the parent changes after making a pool (see the fork test).
STATE = "at construction"


def read_state(_: object = None) -> str:
    return STATE


def square(x: int) -> int:
    return x * x


def shoal_pid(_: object = None) -> int:
    return os.getpid()


def sum_of_squares_in_own_pool(n: int) -> int:
    with shoal.Pool(2) as inner:
        return sum(inner.map(square, range(n)))


def test_fork_workers_start_from_the_state_at_construction() -> None:
    """Under fork every worker, replacements too, is forked from the zygote the pool forked when
    it was made; the stdlib forks replacements from the parent as it is at that later time."""
    global STATE
    STATE = "at construction"
    with shoal.Pool(1, maxtasksperchild=1, context="fork") as pool:
        STATE = "changed later"
        try:
            seen = [pool.apply(read_state) for _ in range(3)]
            pids = {pool.apply(shoal_pid) for _ in range(3)}
        finally:
            STATE = "at construction"
    assert seen == ["at construction"] * 3
    assert len(pids) == 3  # each apply ran in a fresh (replacement) worker


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_task_can_run_a_pool_of_its_own(method: str) -> None:
    """Workers are not daemons; the stdlib's raise ``AssertionError: daemonic processes are not
    allowed to have children``."""
    with shoal.Pool(1, context=method) as pool:
        assert pool.apply(sum_of_squares_in_own_pool, (10,)) == sum(x * x for x in range(10))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_lambdas_and_closures_run_as_tasks(method: str) -> None:
    """The stdlib cannot pickle them (``PicklingError``); shoal sends them by value."""
    offset = 10

    def add_offset(x: int) -> int:
        return x + offset

    with shoal.Pool(2, context=method) as pool:
        assert pool.map(lambda x: x * 3, range(5)) == [0, 3, 6, 9, 12]
        assert pool.apply(add_offset, (1,)) == 11


def test_threadpool_terminate_and_join_do_not_wait_for_a_running_task() -> None:
    """A thread cannot be stopped: terminate() abandons it and fails its task with
    CancelledError, and join() returns without waiting for the call to end (the stdlib's join
    waits for it)."""
    started, release = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        release.wait(LIVE)
        return "finished"

    pool = shoal.ThreadPool(1)
    try:
        result = pool.apply_async(stuck)
        assert started.wait(LIVE)
        pool.terminate()
        joiner = threading.Thread(target=pool.join)
        joiner.start()
        joiner.join(LIVE)
        assert not joiner.is_alive(), "ThreadPool.join() waited for a task it had abandoned"
        assert not release.is_set()  # the task was still running all along
        with pytest.raises(CancelledError):
            result.get(LIVE)
    finally:
        release.set()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_private_attributes_of_the_stdlib_pool(method: str) -> None:
    pool = shoal.Pool(2, context=method)
    try:
        assert pool._processes == 2
        assert pool._state == multiprocessing.pool.RUN
        workers = pool._pool
        # As in the stdlib, every worker's pid is known once the constructor returned.
        assert len(workers) == 2
        assert all(isinstance(w.pid, int) for w in workers)
        assert all(w.is_alive() and w.exitcode is None for w in workers)
        assert pool.apply(shoal_pid) in {w.pid for w in workers}
        pool._repopulate_pool()  # the manager already keeps the pool full: nothing to do
        assert [w.pid for w in pool._pool] == [w.pid for w in workers]
        pool.close()
        assert pool._state == multiprocessing.pool.CLOSE
        pool.join()
        for w in workers:
            w.join(LIVE)
            assert not w.is_alive()
            assert w.exitcode == 0
    finally:
        pool.terminate()
        pool.join()
    assert pool._state == multiprocessing.pool.TERMINATE
