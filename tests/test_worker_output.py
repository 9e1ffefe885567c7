"""Worker logs, stdout and stderr arrive in the parent: whole lines, its own handlers and
streams, and a slow reader never blocks a worker."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading

import pytest

import shoal
from shoal._core._output import OutputForwarder

log = logging.getLogger("shoal.tests.worker")


def log_something(x: int) -> int:
    log.warning("task %d says hello", x)
    return x


def print_lines(tag: str) -> int:
    for _ in range(200):
        print(tag * 300)
    return os.getpid()


def c_level_write(x: int) -> int:
    os.write(1, b"from C, task %d\n" % x)
    os.write(2, b"to stderr, task %d\n" % x)
    return x


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_log_records_reach_parent_handlers(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with shoal.Pool(2, context=method) as pool:
        pids = {h.pid for h in pool._pool}
        assert pool.map(log_something, range(4)) == [0, 1, 2, 3]
    records = [r for r in caplog.records if r.name == "shoal.tests.worker"]
    assert sorted(r.getMessage() for r in records) == [f"task {i} says hello" for i in range(4)]
    assert all(r.processName.startswith("ShoalPoolWorker-") for r in records)
    assert {r.process for r in records} <= pids


def test_worker_prints_and_c_writes_reach_parent_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with shoal.Pool(2) as pool:
        assert pool.map(c_level_write, range(3)) == [0, 1, 2]
        out, err = capsys.readouterr()
    assert sorted(out.splitlines()) == [f"from C, task {i}" for i in range(3)]
    assert sorted(err.splitlines()) == [f"to stderr, task {i}" for i in range(3)]


def test_lines_are_never_interleaved_mid_line(capsys: pytest.CaptureFixture[str]) -> None:
    with shoal.Pool(2) as pool:
        pool.map(print_lines, ["a", "b", "c", "d"], chunksize=1)
        out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 800
    assert all(len(set(line)) == 1 and len(line) == 300 for line in lines)


class _BlockedStream(io.StringIO):
    """A stream whose reader is slow: writes wait until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, s: str) -> int:
        self.release.wait(60)
        return super().write(s)


def test_a_slow_reader_drops_and_counts_instead_of_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_out, slow_err = _BlockedStream(), _BlockedStream()
    monkeypatch.setattr(sys, "stdout", slow_out)
    monkeypatch.setattr(sys, "stderr", slow_err)
    forwarder = OutputForwarder("test-output", budget=1000)
    for i in range(100):
        forwarder.lines(1, b"line %03d ...................\n" % i)  # returns at once, always
    slow_out.release.set()
    slow_err.release.set()
    forwarder.flush(60)
    forwarder.lines(1, b"after\n")
    forwarder.flush(60)
    written = slow_out.getvalue().splitlines()
    assert 0 < len(written) < 101
    assert written[-1] == "after"
    assert "line(s) of worker output were dropped" in slow_err.getvalue()


def _report_name(queue: object) -> None:
    import multiprocessing

    queue.put((os.getpid(), multiprocessing.current_process().name))  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_each_worker_is_named_after_itself(method: str) -> None:
    """current_process().name (logging's processName) is the worker's own name in every worker,
    also in those the zygote forks, and in replacements (not the zygote's name)."""
    import multiprocessing

    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    with shoal.Pool(3, context=ctx, initializer=_report_name, initargs=(queue,),
                    maxtasksperchild=1) as pool:
        assert pool.map(abs, range(-4, 0), chunksize=1) == [4, 3, 2, 1]
        # Each worker runs one task: four tasks, at least four workers said who they are.
        seen = dict(queue.get(timeout=30) for _ in range(4))
        for h in pool._pool:
            h.wait_started(30)
        handles = {h.pid: h.name for h in pool._pool}
    assert all(name.startswith("ShoalPoolWorker-") for name in seen.values()), seen
    assert len(set(seen.values())) == 4, seen
    assert {pid: seen[pid] for pid in handles if pid in seen} == {
        pid: name for pid, name in handles.items() if pid in seen
    }
