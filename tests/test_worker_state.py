"""``shoal.worker_state()`` and ``worker_exit=``: state that outlives a task, handed back to the
parent when each worker retires; lost (never half-delivered, never hanging) when a worker is
killed or the pool terminated."""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import shoal
from helpers import state as st
from helpers.blocking import Gate, announce_and_wait


def _check_per_worker(ran: list[tuple[str, int]], exits: list[tuple[str, int, Any]]) -> None:
    """Each worker's tasks saw its own counter go 1, 2, 3...; its exit reports its last value;
    every task is counted once."""
    by_worker: dict[str, list[int]] = defaultdict(list)
    for who, n in ran:
        by_worker[who].append(n)
    for who, counts in by_worker.items():
        assert sorted(counts) == list(range(1, len(counts) + 1)), (who, counts)
    reported = {who: n for who, n, _ in exits}
    assert len(reported) == len(exits), f"a worker reported twice: {exits}"
    for who, counts in by_worker.items():
        assert reported.get(who) == len(counts), (who, counts, exits)
    assert sum(n for _, n, _ in exits) == len(ran)


# ---- process facades ----------------------------------------------------------------------


def test_pool_state_persists_per_worker_and_every_worker_reports(start_method: str) -> None:
    with shoal.Pool(
        2, st.seed, ("seeded",), context=start_method, worker_exit=st.report
    ) as pool:
        ran = pool.map(st.bump, range(40), chunksize=3)
        pool.close()
        pool.join()
        exits = pool.worker_exit_results()
    assert len(exits) == 2, exits  # a Pool starts every worker: each one retires and reports
    assert all(seed == "seeded" for _, _, seed in exits), exits
    _check_per_worker(ran, exits)


def test_process_executor_reports_at_shutdown(start_method: str) -> None:
    ctx = multiprocessing.get_context(start_method)
    with shoal.ProcessPoolExecutor(
        2, ctx, st.seed, ("seeded",), worker_exit=st.report
    ) as ex:
        ran = list(ex.map(st.bump, range(40), chunksize=3))
        pids = set(ex._processes)
    exits = ex.worker_exit_results()
    assert {int(who.split("/")[0]) for who, _, _ in exits} == pids
    assert all(seed == "seeded" for _, _, seed in exits), exits
    _check_per_worker(ran, exits)


def test_after_close_an_idle_worker_retires_while_another_still_works(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    pool = shoal.Pool(2, worker_exit=functools.partial(st.announce_exit, gate.fifo))
    try:
        held = pool.apply_async(announce_and_wait, (gate.fifo, gate.lock, 7))
        busy = gate.started()  # one worker is in the task, held by the gate
        pool.close()
        idle = gate.started()  # the other runs its exit function now, not after the task
        assert idle != busy and not held.ready()
        gate.open()
        assert held.get() == 7
        pool.join()
    finally:
        pool.terminate()
        gate.close()
    # Both reported (in the order their results arrived, which the FIFO does not fix).
    assert sorted(int(who.split("/")[0]) for who in pool.worker_exit_results()) == sorted(
        [idle, busy]
    )


def test_a_large_state_comes_back_whole(start_method: str) -> None:
    np = pytest.importorskip("numpy")
    with shoal.Pool(2, context=start_method, worker_exit=st.array_exit) as pool:
        pool.map(st.add_to_array, range(1000), chunksize=10)
        pool.close()
        pool.join()
        arrays = [a for a in pool.worker_exit_results() if a is not None]
    total = np.sum(arrays, axis=0)
    expected = np.zeros(1 << 18, dtype=np.int64)
    expected[:1000] = np.arange(1000)
    assert total.dtype == np.int64 and np.array_equal(total, expected)


def test_a_thread_of_a_process_worker_shares_its_state() -> None:
    with shoal.Pool(1) as pool:
        assert pool.apply(st.seen_from_a_thread) is True


def test_maxtasksperchild_gives_each_worker_a_fresh_state() -> None:
    pool = shoal.Pool(1, maxtasksperchild=1, worker_exit=st.report)
    try:
        first = pool.apply(st.bump)
        second = pool.apply(st.bump)
        # The second task ran on the replacement, started once the first worker had gone: the
        # first's exit result came before that (same pipe), so it is here while the pool runs
        # (the second's may be too, if that worker has already retired).
        so_far = [(who, n) for who, n, _ in pool.worker_exit_results()]
        assert so_far in ([first], [first, second]), so_far
        third = pool.apply(st.bump)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert first[1] == second[1] == third[1] == 1
    assert len({first[0], second[0], third[0]}) == 3
    exits = pool.worker_exit_results()
    # Three workers retired after their task, each reporting its own; a replacement started
    # for the third (if it retired before close() took effect) reports an empty state.
    counts = [n for _, n, _ in exits]
    assert counts[:3] == [1, 1, 1] and counts[3:] in ([], [0]), counts
    assert [who for who, _, _ in exits[:3]] == [first[0], second[0], third[0]]


def test_process_executor_max_tasks_per_child_gives_a_fresh_state() -> None:
    with shoal.ProcessPoolExecutor(1, max_tasks_per_child=2, worker_exit=st.report) as ex:
        ran = [ex.submit(st.bump).result() for _ in range(4)]
    assert [n for _, n in ran] == [1, 2, 1, 2]
    exits = ex.worker_exit_results()
    assert [n for _, n, _ in exits] == [2, 2]
    _check_per_worker(ran, exits)


def test_memory_guard_retirement_runs_the_exit_function() -> None:
    pool = shoal.Pool(1, max_memory_per_worker="50MB", worker_exit=st.report)
    try:
        grown_who, _ = pool.apply(st.grow_state, (120,))  # past the limit: retires after this
        after_who, after_n = pool.apply(st.bump)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert after_who != grown_who and after_n == 1  # a fresh state on the replacement
    assert [(w, n) for w, n, _ in pool.worker_exit_results()] == [(grown_who, 1), (after_who, 1)]


def test_a_killed_worker_loses_its_state() -> None:
    pool = shoal.Pool(1, worker_exit=st.report)
    try:
        assert pool.apply(st.bump)[1] == 1
        who, n = pool.apply(st.bump)
        assert n == 2
        victim = int(who.split("/")[0])
        os.kill(victim, signal.SIGKILL)
        after_who, after_n = pool.apply(st.bump)  # on the replacement (or re-run there)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert after_who != who
    assert after_n == 1
    # The killed worker ran no exit function: only the replacement reports.
    assert [(w, n) for w, n, _ in pool.worker_exit_results()] == [(after_who, 1)]


def test_worker_exit_that_raises_is_reported_with_its_traceback() -> None:
    pool = shoal.Pool(2, worker_exit=st.exit_raises)
    pool.map(st.bump, range(4))
    pool.close()
    pool.join()  # returns: a failing exit function ends its worker as usual
    with pytest.raises(ValueError, match="no report from") as info:
        pool.worker_exit_results()
    cause = info.value.__cause__
    assert cause is not None and "exit_raises" in str(cause)  # the worker's traceback
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "worker_exit raised in worker" in notes
    assert "1 more of the 2 workers" in notes
    with pytest.raises(ValueError, match="no report from"):
        pool.worker_exit_results()  # still there on a second call


def test_worker_exit_whose_value_cannot_be_pickled() -> None:
    with shoal.ProcessPoolExecutor(1, worker_exit=st.exit_unpicklable) as ex:
        ex.submit(st.bump).result()
    with pytest.raises((TypeError, pickle.PicklingError)) as info:
        ex.worker_exit_results()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "could not be pickled" in notes and "lock" in notes


@pytest.mark.parametrize("how", ["terminate", "with"])
def test_terminate_runs_no_exit_function(how: str) -> None:
    pool = shoal.Pool(2, worker_exit=st.report)
    if how == "with":
        with pool:
            pool.map(st.bump, range(4))
    else:
        pool.map(st.bump, range(4))
        pool.terminate()
    pool.join()
    assert pool.worker_exit_results() == []


def test_terminate_while_an_exit_function_runs_does_not_hang(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    try:
        exit_fn = functools.partial(st.exit_announces_and_waits, gate.fifo, gate.lock)
        pool = shoal.Pool(1, worker_exit=exit_fn)
        pool.apply(st.bump)
        pool.close()
        assert gate.started() > 0  # the worker is in its exit function, held by the gate
        pool.terminate()
        pool.join()
        assert pool.worker_exit_results() == []
    finally:
        gate.close()


# ---- thread facades ----------------------------------------------------------------------


def _thread_run(pool_map: Callable[..., list[tuple[str, int]]], n_threads: int) -> list[Any]:
    """Tasks that first meet on a barrier, so every thread runs some, then many more."""
    barrier = threading.Barrier(n_threads)
    return pool_map(st.meet_then_bump, [barrier] * n_threads) + pool_map(st.bump, range(60))


def test_threadpool_state_is_per_thread() -> None:
    pool = shoal.ThreadPool(3, st.seed, ("seeded",), worker_exit=st.report)
    try:
        ran = _thread_run(lambda fn, xs: pool.map(fn, xs, chunksize=1), 3)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    exits = pool.worker_exit_results()
    assert len(exits) == 3 and len({who for who, _, _ in exits}) == 3
    assert all(seed == "seeded" for _, _, seed in exits), exits
    _check_per_worker(ran, exits)


def test_thread_executor_reports_at_shutdown() -> None:
    with shoal.ThreadPoolExecutor(2, worker_exit=st.report) as ex:
        ran = _thread_run(lambda fn, xs: list(ex.map(fn, xs)), 2)
    exits = ex.worker_exit_results()
    assert len(exits) == 2
    _check_per_worker(ran, exits)


def test_thread_worker_exit_that_raises_keeps_its_own_traceback() -> None:
    with shoal.ThreadPoolExecutor(1, worker_exit=st.exit_raises) as ex:
        ex.submit(st.bump).result()
    with pytest.raises(ValueError, match="no report from") as info:
        ex.worker_exit_results()
    assert info.value.__traceback__ is not None
    assert "exit_raises" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert any("worker_exit raised in thread" in n for n in info.value.__notes__)


def test_threadpool_terminate_while_an_exit_function_runs_does_not_hang() -> None:
    entered = threading.Event()
    release = threading.Event()

    def exit_fn() -> str:
        entered.set()
        release.wait(st.CEILING)
        return "late"

    pool = shoal.ThreadPool(1, worker_exit=exit_fn)
    try:
        pool.apply(st.bump)
        pool.close()
        assert entered.wait(st.CEILING)
        pool.terminate()
        pool.join()  # the thread in worker_exit is left behind, as a running task would be
        assert pool.worker_exit_results() == []
    finally:
        release.set()


def test_threadpool_terminate_runs_no_exit_function() -> None:
    with shoal.ThreadPool(2, worker_exit=st.report) as pool:
        pool.map(st.bump, range(4))
    pool.join()
    assert pool.worker_exit_results() == []


# ---- outside a worker, bad input -----------------------------------------------------------


def test_worker_state_outside_a_worker_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"worker_state\(\) was called outside a shoal worker"):
        shoal.worker_state()


@pytest.mark.parametrize(
    "make",
    [
        lambda: shoal.Pool(1, worker_exit="report"),
        lambda: shoal.ThreadPool(1, worker_exit=42),
        lambda: shoal.ProcessPoolExecutor(1, worker_exit="report"),
        lambda: shoal.ThreadPoolExecutor(1, worker_exit=42),
    ],
)
def test_worker_exit_must_be_callable(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match="worker_exit must be a callable"):
        make()


def test_the_readme_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## State that outlives a task", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert code is not None
    said = re.search(r"print\(total\) +# (.*)", code[1])
    assert said is not None
    script = tmp_path / "word_count.py"
    script.write_text(code[1])
    src = str(Path(shoal.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == said[1].strip()
