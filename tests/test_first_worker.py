"""Under fork, a Pool made in the main thread forks its first worker itself and that worker forks
the pool's zygote: the pool's own process forks once. These tests pin down what that must not
change: every worker still starts, the zygote outlives the first worker, and nothing is left
running once the pool is joined."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import shoal
from helpers import faults

FORK = multiprocessing.get_context("fork")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _pool_tree(before: set[int]) -> tuple[psutil.Process, psutil.Process]:
    """(first worker, zygote) of a pool made after ``before`` was taken."""
    me = psutil.Process()
    new = [p for p in me.children() if p.pid not in before]
    assert len(new) == 1, f"the pool's process should fork once, forked {new}"
    first = new[0]
    assert _wait_for(lambda: len(first.children()) == 1), first.children()
    return first, first.children()[0]


def test_pool_forks_once_and_its_first_worker_forks_the_zygote() -> None:
    before = {p.pid for p in psutil.Process().children()}
    with shoal.Pool(3, context=FORK) as pool:
        first, zygote = _pool_tree(before)
        # The zygote forks the other two workers.
        assert _wait_for(lambda: len(zygote.children()) == 2), zygote.children()
        pids = set(pool.map(faults.getpid, range(200), chunksize=1))
        workers = {first.pid, *(c.pid for c in zygote.children())}
        assert pids <= workers
        assert zygote.pid not in pids
        # The zygote writes where the pool writes, not into the first worker's output pipes
        # (holding their ends would hide that worker's end from the pool).
        for fd in (1, 2):
            mine = os.readlink(f"/proc/self/fd/{fd}")
            assert os.readlink(f"/proc/{zygote.pid}/fd/{fd}") == mine
            assert os.readlink(f"/proc/{first.pid}/fd/{fd}") != mine


def test_zygote_outlives_a_killed_first_worker() -> None:
    before = {p.pid for p in psutil.Process().children()}
    pool = shoal.Pool(2, context=FORK)
    try:
        first, zygote = _pool_tree(before)
        assert pool.map(faults.square, range(10)) == [x * x for x in range(10)]
        os.kill(first.pid, signal.SIGKILL)
        assert _wait_for(lambda: _gone(first.pid))
        # Replacements come from the zygote, which lives on without its parent.
        assert pool.map(faults.square, range(50), chunksize=1) == [x * x for x in range(50)]
        assert zygote.is_running() and zygote.status() != psutil.STATUS_ZOMBIE
        assert first.pid not in set(pool.map(faults.getpid, range(20), chunksize=1))
    finally:
        pool.close()
        pool.join()
    assert _wait_for(lambda: _gone(zygote.pid))


def test_join_returns_only_when_the_zygote_and_its_workers_are_gone() -> None:
    before = {p.pid for p in psutil.Process().children()}
    pool = shoal.Pool(2, context=FORK)
    first, zygote = _pool_tree(before)
    assert _wait_for(lambda: len(zygote.children()) == 1)
    second = zygote.children()[0]
    pool.map(faults.square, range(4))
    pool.close()
    pool.join()
    # No waiting here: join() itself waited for the zygote, which reaps its workers.
    assert _gone(zygote.pid)
    assert _gone(second.pid)
    assert _wait_for(lambda: _gone(first.pid))


@pytest.mark.parametrize("how", ["terminate", "close"])
def test_a_pool_made_off_the_main_thread_still_works(how: str) -> None:
    # Off the main thread the pool forks its zygote itself (a worker's parent-death signal
    # follows the thread that forked it); the results must be the same.
    import threading

    out: list[object] = []

    def run() -> None:
        pool = shoal.Pool(2, context=FORK)
        try:
            out.append(pool.map(faults.square, range(20)))
        finally:
            getattr(pool, how)()
            pool.join()

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert not t.is_alive()
    assert out == [[x * x for x in range(20)]]


@pytest.mark.parametrize("late", [False, True], ids=["", "report-read-late"])
def test_a_first_worker_that_dies_before_forking_the_zygote_is_replaced(late: bool) -> None:
    # It dies in its first instant; a spawned zygote stands in for the one it never forked,
    # and the workers asked of that one are replaced like dead ones: the pool still works.
    # Also when the manager asks for a replacement before it has read that the zygote's
    # socket closed (it once broke the pool then: "could not start a worker process").
    tests = Path(__file__).parent
    proc = subprocess.run(
        [sys.executable, str(tests / "helpers" / "first_worker_dies.py")]
        + (["--late-zygote-report"] if late else []),
        env={**os.environ, "PYTHONPATH": str(tests)}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["results"] == [x * x for x in range(40)]
    assert report["stand_in"] is True
    assert 1 <= len(report["pids"]) <= 2


def _own_fds(barrier: object) -> tuple[int, list[str]]:
    barrier.wait(timeout=30)  # type: ignore[attr-defined] # one task in each worker
    from multiprocessing import resource_tracker

    # Not fd 0 (stdin is the pool's own, a pipe when the tests' is) nor the resource tracker's
    # pipe, which every worker keeps by design (it tracks their shared memory).
    shared = {"0", str(getattr(resource_tracker._resource_tracker, "_fd", None))}
    return os.getpid(), sorted(
        os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
        if fd not in shared and os.path.exists(f"/proc/self/fd/{fd}")
    )


@pytest.mark.parametrize("n", [2, 4])
def test_workers_the_zygote_forks_ahead_hold_only_their_own_pipes(n: int) -> None:
    """The pipe ends of the pool's other first workers ride along with the first worker's fork
    and its zygote's: each worker must end up with its own only (holding another's would keep
    that one's end of file from the pool when it dies)."""
    manager = FORK.Manager()
    try:
        barrier = manager.Barrier(n)
        with shoal.Pool(n, context=FORK) as pool:
            got = dict(pool.map(_own_fds, [barrier] * n, chunksize=1))
    finally:
        manager.shutdown()
    assert len(got) == n
    pipes = {pid: [f for f in fds if f.startswith("pipe:")] for pid, fds in got.items()}
    # Its task and result pipes, and the stdout and stderr the pool reads.
    assert all(len(p) == 4 for p in pipes.values()), pipes
    every = [f for p in pipes.values() for f in p]
    assert len(set(every)) == len(every), pipes  # no pipe shared by two workers


def test_a_retired_zygote_ends_with_its_last_worker() -> None:
    """Told that no more workers will be asked for, the zygote ends once its last worker has,
    while the pool still holds its socket: the pool's close need not wait for it afterwards."""
    from shoal._backends._launch import ZygoteLauncher
    from shoal._backends._spawn import SharedSlots

    slots = SharedSlots(64)
    launcher = ZygoteLauncher(FORK, slots, "RetireTest", spawned=False)
    try:
        handle, fds = launcher.launch(0)
        task_w, result_r, out_r, err_r = fds
        launcher.retire()
        zygote = launcher._zygote
        # (Not zygote.join(timeout): the zygote closed the sentinel pipe multiprocessing waits
        # on, with the other fds it inherited.)
        assert _wait_for(lambda: (launcher.read_reports(), handle.pid)[1] is not None, 30)
        assert not _wait_for(lambda: _gone(zygote.pid), timeout=0.3)  # it waits for its worker
        os.close(task_w)  # end of file: the worker ends without a task
        assert _wait_for(lambda: _gone(zygote.pid), timeout=30)
        zygote.join()
        assert zygote.exitcode == 0
        # It reported its worker's exit before ending.
        assert _wait_for(lambda: (launcher.read_reports(), handle.exitcode)[1] == 0)
        with pytest.raises(OSError, match="no more workers"):
            launcher.launch(1)
        for fd in (result_r, out_r, err_r):
            os.close(fd)
    finally:
        launcher.close()
        slots.close()
