"""Never stuck: retries, task timeouts, forced cancel, Ctrl-C, parent death, bounded imap,
the memory guard, bad parameters. Time bounds are generous ceilings unless the issue names one."""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest

import shoal
from helpers import faults

HELPERS = Path(__file__).parent / "helpers"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}


def flaky_dies_once(path: str) -> str:
    """Kills its worker the first time it runs, succeeds the second time."""
    if not os.path.exists(path):
        Path(path).touch()
        os._exit(9)
    return "second time lucky"


def raises_until(path: str, times: int) -> int:
    """Raises ConnectionError until it has run ``times`` times."""
    p = Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n + 1 < times:
        raise ConnectionError(f"attempt {n + 1}")
    return n + 1


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def hold_memory(megabytes: int) -> int:
    global _HELD
    _HELD = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(_HELD), 4096):
        _HELD[i] = 1  # touch every page so it counts in RSS
    return os.getpid()


_HELD: bytearray | None = None


def fail_when_told(fd: int) -> None:
    """An initializer that fails once a byte arrives on the inherited pipe ``fd``."""
    os.read(fd, 1)
    raise RuntimeError("initializer failed when told to")


# ---- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_retry_reruns_a_task_whose_worker_died(method: str, tmp_path: Path) -> None:
    with shoal.Pool(2, context=method, retries=1) as pool:
        assert pool.apply(flaky_dies_once, (str(tmp_path / "once"),)) == "second time lucky"
        assert pool.statistics().tasks_retried == 1


def test_retries_exhausted_keep_the_error_type_and_list_attempts() -> None:
    with shoal.Pool(2) as pool:
        with pytest.raises(shoal.WorkerDied) as info:
            pool.apply(faults.run_fault, ("c_exit",), retries=2)
        notes = info.value.__notes__
        assert [n for n in notes if n.startswith("shoal: attempt")] == [
            n for n in notes if "attempt" in n
        ]
        assert sum("attempt" in n for n in notes) == 2
        assert "attempt 2 of 3" in notes[-1]
        assert pool.apply(faults.square, (5,)) == 25


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_retry_on_exception_types_with_backoff(kind: str, tmp_path: Path) -> None:
    cls = shoal.Pool if kind == "process" else shoal.ThreadPool
    with cls(2, retries=3, retry_on=ConnectionError, backoff=0.01) as pool:
        assert pool.apply(raises_until, (str(tmp_path / "n"), 3)) == 3
        # Not a retry_on type: fails at once.
        with pytest.raises(faults.FaultError):
            pool.apply(faults.run_fault, ("error",))
    with shoal.ThreadPoolExecutor(2, retries=1, retry_on=ConnectionError) as ex:
        with pytest.raises(ConnectionError) as info:
            ex.submit(raises_until, str(tmp_path / "m"), 5).result(60)
        assert "attempt 1 of 2 failed: ConnectionError" in "\n".join(info.value.__notes__)


# ---- task timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_task_timeout_stops_only_its_worker(method: str) -> None:
    with shoal.Pool(2, context=method, task_timeout=0.5) as pool:
        started = time.monotonic()
        stuck = pool.apply_async(slow, (120,))
        quick = [pool.apply_async(slow, (0.01,)) for _ in range(4)]
        with pytest.raises(shoal.TaskTimeout) as info:
            stuck.get(60)
        assert not isinstance(info.value, TimeoutError)
        assert "task_timeout of 0.5" in str(info.value)
        assert [q.get(60) for q in quick] == [0.01] * 4
        assert time.monotonic() - started < 90  # liveness only: spawn on a loaded machine is slow
        assert pool.apply(faults.square, (6,)) == 36


def test_task_timeout_per_call_and_a_task_that_ignores_sigterm() -> None:
    with shoal.Pool(1) as pool:
        with pytest.raises(shoal.TaskTimeout):
            pool.apply(faults.ignore_sigterm_and_sleep, (120,), task_timeout=0.3)
        # The next task starts at once on a new worker.
        assert pool.apply(faults.square, (7,)) == 49
        assert pool.map(slow, [0.01, 0.02], task_timeout=30) == [0.01, 0.02]


def test_executor_task_timeout() -> None:
    with shoal.ProcessPoolExecutor(2, task_timeout=0.3) as ex:
        f = ex.submit(slow, 120)
        with pytest.raises(shoal.TaskTimeout):
            f.result(60)
        assert ex.submit(faults.square, 8).result(60) == 64


def test_thread_task_timeout_abandons_the_thread_not_the_pool() -> None:
    with shoal.ThreadPool(1, task_timeout=0.2) as pool:
        with pytest.raises(shoal.TaskTimeout) as info:
            pool.apply(slow, (5,))
        assert "abandoned" in str(info.value)
        assert pool.apply(faults.square, (3,)) == 9  # a new thread took the place


def test_wait_timeouts_keep_the_stdlib_meaning() -> None:
    import multiprocessing

    with shoal.Pool(1) as pool:
        r = pool.apply_async(slow, (0.5,))
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=-1)
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.01)
        assert r.get(60) == 0.5


# ---- forced cancel --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cancel_force_stops_a_running_task(method: str, tmp_path: Path) -> None:
    import concurrent.futures

    with shoal.ProcessPoolExecutor(1, mp_context=method) as ex:
        marker = tmp_path / "started"
        f = ex.submit(faults.wait_for_file_then_sleep, str(marker), 120)
        queued = ex.submit(faults.square, 9)
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert f.cancel() is False  # the stdlib meaning: a running task is not cancelled
        waiter = concurrent.futures.wait([f], timeout=0)
        assert not waiter.done
        assert f.cancel(force=True) is True
        assert f.cancelled()
        done, _ = concurrent.futures.wait([f], timeout=60)
        assert f in done
        with pytest.raises(concurrent.futures.CancelledError):
            f.result()
        assert queued.result(60) == 81  # the rest goes on, on a replacement worker


# ---- Ctrl-C ---------------------------------------------------------------------------------


def _run_interrupt(
    kind: str, where: str, group: bool, interactive: bool, tmp_path: Path
) -> dict[str, object]:
    started_dir = tmp_path / "started"
    started_dir.mkdir()
    with subprocess.Popen(
        [sys.executable, str(HELPERS / "interrupt_script.py"), kind, where, str(started_dir),
         "1" if interactive else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        start_new_session=True,
    ) as proc:
        return _drive_interrupt(proc, started_dir, group, interactive)


def _drive_interrupt(
    proc: subprocess.Popen[str], started_dir: Path, group: bool, interactive: bool
) -> dict[str, object]:
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        deadline = time.monotonic() + 60
        while len(list(started_dir.iterdir())) < 2:  # both workers are inside a task
            assert time.monotonic() < deadline, "tasks did not start"
            time.sleep(0.01)
        family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        sent = time.monotonic()
        if group:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
        else:
            os.kill(proc.pid, signal.SIGINT)  # kill -INT
        line = json.loads(proc.stdout.readline())
        report: dict[str, object] = {"latency": float(line["interrupted_at"]) - sent}
        if interactive:
            report["usable"] = json.loads(proc.stdout.readline())["usable"]
        proc.wait(timeout=60)
        report["exit_after"] = time.monotonic() - sent
        alive = [p for p in family if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        report["left_behind"] = alive
        report["stderr"] = proc.stderr.read() if proc.stderr else ""
        return report
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("kind", ["pool", "executor", "threadpool"])
@pytest.mark.parametrize("where", ["wait", "with"])
@pytest.mark.parametrize("group", [True, False], ids=["process-group", "main-only"])
def test_ctrl_c_returns_at_once_and_leaves_nothing(
    kind: str, where: str, group: bool, tmp_path: Path
) -> None:
    report = _run_interrupt(kind, where, group, False, tmp_path)
    assert report["latency"] < 0.5, report  # type: ignore[operator]
    assert report["exit_after"] < 2.0, report  # type: ignore[operator]
    assert report["left_behind"] == [], report
    assert "KeyboardInterrupt" in str(report["stderr"])


@pytest.mark.parametrize("kind", ["pool", "executor", "threadpool"])
def test_ctrl_c_in_an_interactive_session_keeps_the_pool(kind: str, tmp_path: Path) -> None:
    report = _run_interrupt(kind, "wait", True, True, tmp_path)
    assert report["usable"] is True, report
    assert report["latency"] < 0.5, report  # type: ignore[operator]


# ---- parent death ---------------------------------------------------------------------------


def test_workers_die_with_their_parent() -> None:
    shm_before = set(os.listdir("/dev/shm"))
    with subprocess.Popen(
        [sys.executable, str(HELPERS / "orphan_script.py")],
        stdout=subprocess.PIPE, text=True, env=ENV,
    ) as proc:
        _orphans(proc, shm_before)


def _orphans(proc: subprocess.Popen[str], shm_before: set[str]) -> None:
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        workers, everyone = info["workers"], info["descendants"]
        assert len(workers) >= 7  # 3 pools of 2, and the executor started what it needed
        killed = time.monotonic()
        proc.kill()
        proc.wait()

        def alive(pids: list[int]) -> list[int]:
            out = []
            for pid in pids:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        out.append(pid)
                except psutil.NoSuchProcess:
                    pass
            return out

        while alive(workers) and time.monotonic() - killed < 10:
            time.sleep(0.01)
        workers_gone_after = time.monotonic() - killed
        assert alive(workers) == []
        assert workers_gone_after < 1.0, workers_gone_after
        while alive(everyone) and time.monotonic() - killed < 10:
            time.sleep(0.01)
        assert alive(everyone) == []  # zygotes, forkserver, resource tracker too
        assert set(os.listdir("/dev/shm")) - shm_before == set()
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- bounded memory -------------------------------------------------------------------------


def test_imap_reads_only_as_fast_as_results_are_consumed() -> None:
    with shoal.Pool(2) as pool:
        it = pool.imap(faults.square, itertools.count(), chunksize=2)
        assert [next(it) for _ in range(10)] == [x * x for x in range(10)]
        window = it.window
        assert window is not None
        # The consumer pauses; give the feeder every chance to run ahead.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert window.ahead <= window.size + 2
            time.sleep(0.02)
        assert next(it) == 100


def test_close_and_join_before_iterating_still_gets_every_result() -> None:
    pool = shoal.Pool(2)
    it = pool.imap(faults.square, range(2000))
    pool.close()
    pool.join()
    assert list(it) == [x * x for x in range(2000)]


def test_abandoned_iterator_over_endless_input_does_not_block_join() -> None:
    pool = shoal.Pool(2)
    it = pool.imap(faults.square, itertools.count())
    assert next(it) == 0
    del it
    gc.collect()
    pool.close()
    pool.join()  # the per-test timeout is the ceiling


def test_executor_map_buffersize_bounds_submission() -> None:
    with shoal.ProcessPoolExecutor(2) as ex:
        results = ex.map(faults.square, itertools.count(), buffersize=4)
        assert [next(results) for _ in range(20)] == [x * x for x in range(20)]
        assert ex.statistics().tasks_done <= 20 + 4 + 2
        with pytest.raises(ValueError, match="buffersize"):
            ex.map(faults.square, [1], buffersize=0)


def test_memory_guard_replaces_a_grown_worker_after_its_task() -> None:
    with shoal.Pool(1, max_memory_per_worker="50MB") as pool:
        first = pool.apply(hold_memory, (120,))
        second = pool.apply(faults.getpid)
        assert first != second
        assert pool.statistics().workers_lost == 0  # a clean retirement, not a death
    with shoal.Pool(1, max_memory_per_worker="500MB") as pool:
        assert pool.apply(hold_memory, (20,)) == pool.apply(faults.getpid)


# ---- bad parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,error,words",
    [
        (lambda: shoal.Pool(-1), ValueError, "Number of processes must be at least 1"),
        (lambda: shoal.Pool(0), ValueError, "at least 1"),
        (lambda: shoal.Pool(2, maxtasksperchild=0.5), ValueError, "maxtasksperchild"),  # type: ignore[arg-type]
        (lambda: shoal.Pool(2, task_timeout=-1), ValueError, "task_timeout must be a positive"),
        (lambda: shoal.Pool(2, retries=-1), ValueError, "retries must be"),
        (lambda: shoal.Pool(2, max_memory_per_worker="lots"), ValueError, "'2GB'"),
        (lambda: shoal.ProcessPoolExecutor(0), ValueError, "max_workers must be greater than 0"),
        (lambda: shoal.ThreadPoolExecutor(-1), ValueError, "max_workers must be greater than 0"),
        (lambda: shoal.ProcessPoolExecutor(2, retry_on=3), TypeError, "retry_on"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_name_the_problem(make: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        make()  # type: ignore[operator]


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(shoal.BackendUnavailable, match=r"process.*thread"):
        shoal.map(faults.square, [1], backend="nope")
    assert issubclass(shoal.BackendUnavailable, LookupError)


# ---- a broken pool ends -----------------------------------------------------------------------


@contextlib.contextmanager
def executor_failing_when_told() -> Iterator[tuple[shoal.ProcessPoolExecutor, int]]:
    """A one-worker fork executor, whose worker (started by the constructor: fork, main thread)
    fails its initializer once a byte is written to the fd given with it."""
    r, w = os.pipe()
    try:
        ex = shoal.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), initializer=fail_when_told,
            initargs=(r,),
        )
        yield ex, w
    finally:
        os.close(r)
        os.close(w)


def test_a_start_request_read_after_the_break_starts_no_worker() -> None:
    """A submission posts a request to start the workers; under load it was once read just after
    a failed initializer broke the pool. A worker was started then (in the slot of the stopped
    one), never got a frame, and shutdown(), then the interpreter's exit, waited for it for ever.
    The order is forced here: the break itself posts the request, as the racing submission did."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with executor_failing_when_told() as (ex, tell):
        backend = ex._backend
        real_break = backend._break

        def break_then_start(why: str) -> None:
            real_break(why)
            backend._command("start")

        backend._break = break_then_start  # type: ignore[method-assign]
        os.write(tell, b"x")  # now the initializer fails
        future = ex.submit(faults.square, 3)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=60)
        ex.shutdown(wait=True, cancel_futures=True)  # returns: it waited for ever before
        assert backend.statistics().workers_started == 1
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left  # no worker, nor the zygote, outlived the shutdown


def test_a_submission_that_races_the_end_of_a_broken_pool_fails() -> None:
    """A submission checks that the pool is not broken, then queues its chunk. Between the two,
    a failed initializer can break the pool and its manager end with its last worker: the chunk
    was queued where no one would look, and its future waited for ever. The order is forced
    here: the initializer fails once the check is passed, the chunk is queued once the manager
    has ended."""
    with executor_failing_when_told() as (ex, tell):
        backend = ex._backend
        real_submit = backend.submit

        def submit_once_ended(chunk: object) -> None:
            os.write(tell, b"x")  # the check is passed: now the initializer fails
            assert backend.join(60)  # broken, its worker gone: the manager has ended
            real_submit(chunk)

        backend.submit = submit_once_ended  # type: ignore[method-assign]
        future = ex.submit(faults.square, 3)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=60)
        ex.shutdown(wait=True)
