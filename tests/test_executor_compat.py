"""shoal's ProcessPoolExecutor where it differs from the stdlib's on purpose, and the stdlib's
private views it offers; each test stands in for a CPython test the stdlib runner skips
(docs/compat.md, "concurrent.futures (3.13)")."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

import shoal
from helpers.blocking import Gate, announce_and_wait

#: Ceiling for what should happen at once; only a hang reaches it.
LIVE = 60.0


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path)
    yield g
    g.close()


def test_killed_worker_fails_only_its_task(start_method: str, gate: Gate) -> None:
    """CPython's test_killed_child expects the whole pool broken, and submit() to raise. In
    shoal only the task the worker held fails, with WorkerDied (a BrokenProcessPool) naming the
    worker and the signal; a new worker takes the next task."""
    with shoal.ProcessPoolExecutor(1, mp_context=start_method) as ex:
        future = ex.submit(announce_and_wait, gate.fifo, gate.lock)
        pid = gate.started()
        assert list(ex._processes) == [pid]
        ex._processes[pid].terminate()
        with pytest.raises(BrokenProcessPool) as info:
            future.result(timeout=LIVE)
        err = info.value
        assert isinstance(err, shoal.WorkerDied)
        assert (err.pid, err.exitcode, err.signal) == (pid, -signal.SIGTERM, signal.SIGTERM)
        assert not ex._broken
        assert ex.submit(pow, 2, 8).result(timeout=LIVE) == 256
        assert list(ex._processes) != [pid]


def test_workers_saturate_and_end(start_method: str, gate: Gate) -> None:
    """What CPython's test_saturation and test_processes_terminate check, with tasks that can be
    sent (theirs take a multiprocessing Semaphore, so under spawn and forkserver shoal fails them
    in submit() and starts no worker): many queued tasks start max_workers workers, no more,
    visible in _processes as soon as submit() returns; after shutdown every one has exited."""
    with shoal.ProcessPoolExecutor(3, mp_context=start_method) as ex:
        futures = [ex.submit(announce_and_wait, gate.fifo, gate.lock, i) for i in range(15)]
        processes = ex._processes
        assert len(processes) == 3
        started = {gate.started() for _ in range(3)}
        assert started == set(processes)
        assert len(ex._processes) == 3
        gate.open()
        assert [f.result(timeout=LIVE) for f in futures] == list(range(15))
    for handle in processes.values():
        handle.join(LIVE)
        assert not handle.is_alive()
        assert handle.exitcode == 0


def record_init(queue: multiprocessing.Queue, lock: object, counter: object) -> None:  # type: ignore[type-arg]
    with lock:  # type: ignore[attr-defined]
        counter.value += 1  # type: ignore[attr-defined]
    queue.put(os.getpid())


def test_initargs_can_hold_objects_multiprocessing_shares_only_at_start(start_method: str) -> None:
    """A multiprocessing Queue, Lock or Value pickles only while a process starts; the stdlib
    passes initargs that way, so they work as initargs in shoal too (CPython's test_init passes
    a logging queue), under every start method."""
    ctx = multiprocessing.get_context(start_method)
    queue, lock, counter = ctx.Queue(), ctx.Lock(), ctx.Value("i", 0)
    with shoal.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=record_init, initargs=(queue, lock, counter)
    ) as ex:
        futures = [ex.submit(os.getpid) for _ in range(2)]
        ran_in = {f.result(timeout=LIVE) for f in futures}
        workers = set(ex._processes)
    assert ran_in <= workers
    announced = {queue.get(timeout=LIVE) for _ in workers}
    assert announced == workers
    assert counter.value == len(workers)
    queue.close()
    queue.join_thread()


def test_shutdown_cancel_futures_runs_what_workers_were_started_for(
    start_method: str, gate: Gate
) -> None:
    """shutdown(cancel_futures=True) right after many submits: as in the stdlib, whose call
    queue already holds up to max_workers + 1 calls, the calls the workers were started for run
    and the rest are cancelled (CPython's test_cancel_futures wants some of each). Unlike the
    stdlib's, the cancelled futures count as done for wait() (the stdlib's never do)."""
    ex = shoal.ProcessPoolExecutor(3, mp_context=start_method)
    futures = [ex.submit(announce_and_wait, gate.fifo, gate.lock, i) for i in range(30)]
    ex.shutdown(wait=False, cancel_futures=True)
    # The manager acts on the shutdown a moment after the call. The gate stays shut until it
    # has: no task can end before, so no worker falls idle and takes one more call meanwhile
    # (with the gate opened at once, a worker that ended its task first got a fourth, 1 run
    # in 100).
    done, _ = concurrent.futures.wait(futures[3:], timeout=LIVE)
    assert len(done) == 27
    assert all(f.cancelled() for f in futures[3:])
    gate.open()
    assert [f.result(timeout=LIVE) for f in futures[:3]] == [0, 1, 2]
    ex.shutdown()


def test_under_fork_the_first_worker_starts_with_the_executor() -> None:
    """Made in the main thread under fork, the executor forks its first worker in the
    constructor (the stdlib forks none before the first submit()); the first submit() starts
    the others, as the stdlib's does."""
    with shoal.ProcessPoolExecutor(3, mp_context="fork") as ex:
        before = ex._processes
        assert len(before) == 1
        assert ex.submit(os.getpid).result(timeout=LIVE) in set(ex._processes)
        after = ex._processes
        assert len(after) == 3
        assert set(before) <= set(after)
