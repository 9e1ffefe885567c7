"""Fork safety: why a pool under fork keeps a zygote (DESIGN.md, "Starting workers").

A forked child inherits every lock in the state it had at the fork, but not the threads that
held them: a lock some thread of the parent held then stays held in the child for ever
(gh-90622). multiprocessing.Pool forks its replacement workers from the pool's own process,
whatever its threads hold at that moment. shoal forks every later worker (a replacement, or
one an executor starts on demand) from its zygote, a process forked before the pool had any
thread (in a Pool's constructor, at an executor's first submission). A lock taken after that
is free there.

The control runs the same tasks on multiprocessing.Pool and shows them hang: the shoal tests
pass because of the zygote, not because the scenario is harmless.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

import pytest

import shoal
from helpers import faults

#: Generous: a worker that inherited the lock held never returns; one that did not, at once.
LIVENESS = 30.0

_USER_LOCK = threading.Lock()


def take_the_user_lock(x: int) -> tuple[int, int]:
    """Needs ``_USER_LOCK``: in a worker forked while another thread held it, waits for ever."""
    with _USER_LOCK:
        return x, os.getpid()


def test_pool_replacements_do_not_inherit_a_lock_held_after_the_constructor() -> None:
    # maxtasksperchild=1: every task after the first runs in a worker started for it.
    with shoal.Pool(1, maxtasksperchild=1) as pool:
        first = pool.apply(take_the_user_lock, (0,))
        with _USER_LOCK:  # held by this thread while the replacements are forked
            later = [pool.apply_async(take_the_user_lock, (i,)) for i in range(1, 4)]
            results = [r.get(timeout=LIVENESS) for r in later]
    assert [x for x, _ in results] == [1, 2, 3]
    pids = {first[1], *(pid for _, pid in results)}
    assert len(pids) == 4, pids  # each task had its own worker: three were started later


def _result(future: Any) -> Any:
    """A shoal future's result; should its worker be stuck, that worker is stopped (a forced
    cancel), so the test fails rather than hangs in the executor's shutdown."""
    try:
        return future.result(timeout=LIVENESS)
    except TimeoutError:
        future.cancel(force=True)
        raise


def test_executor_replacement_does_not_inherit_a_lock_held_after_the_first_submit() -> None:
    with shoal.ProcessPoolExecutor(1) as ex:
        _, first_pid = _result(ex.submit(take_the_user_lock, 0))
        with _USER_LOCK:
            # The worker dies; shoal replaces it (the pool is not broken), and the next task
            # runs in the replacement.
            with pytest.raises(shoal.WorkerDied):
                _result(ex.submit(faults.c_exit))
            x, pid = _result(ex.submit(take_the_user_lock, 1))
    assert x == 1
    assert pid != first_pid


# The stdlib forks from a process with threads here; on 3.12+ os.fork() warns about it.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_control_multiprocessing_pool_replacements_hang_on_the_held_lock() -> None:
    pool = multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1)
    try:
        assert pool.apply(take_the_user_lock, (0,))[0] == 0
        with _USER_LOCK:
            # Task 1's worker may have been forked before this thread took the lock (the
            # stdlib replaces a worker as soon as it exits); task 2's is forked after task 1
            # ran, so with the lock held.
            tasks = [pool.apply_async(take_the_user_lock, (i,)) for i in (1, 2)]
            # Deadlocked, not slow: the lock is held in that worker by no thread at all.
            with pytest.raises(multiprocessing.TimeoutError):
                tasks[-1].get(timeout=1.0)
    finally:
        pool.terminate()
        pool.join()
