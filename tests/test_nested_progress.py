"""A pool run inside a process worker with ``progress=True`` draws nothing there: its counts go up
the worker's result pipe (``P`` frames) and the parent shows each inner call on a line of its
own, named after the worker (tqdm or rich in a terminal, plain lines in a pipe)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import shoal
from helpers import nested
from shoal._core import _relay

LIVE = 60.0
WORKER = r"ShoalPoolWorker-\d+"


def _done_line(who: str, desc: str, n: int) -> re.Pattern[str]:
    return re.compile(
        rf"^{who}: {desc}: {n}/{n} \(100%\) done, 0 failed, in \d+\.\d s \(\d+\.\d/s\)$",
        re.MULTILINE,
    )


def _stderr_showing(capsys: pytest.CaptureFixture[str], *patterns: re.Pattern[str]) -> str:
    """What was written to stderr, once every pattern is in it (or LIVE seconds passed). The
    parent draws on a thread of its own, and waits only briefly for it before it hands back a
    result (a terminal that does not keep up must not hold up the pool): under load a line may
    come just after the call returned."""
    err = ""
    deadline = time.monotonic() + LIVE
    while True:
        err += capsys.readouterr().err
        if all(p.search(err) for p in patterns) or time.monotonic() > deadline:
            return err
        time.sleep(0.01)


def _no_worker_drawn_bars(err: str) -> None:
    """Nothing a terminal would animate, and no bar a worker drew into its own stderr (it
    would come through as a line without the worker's name in front)."""
    assert "\r" not in err and "\x1b" not in err, err
    for line in err.splitlines():
        assert not re.match(r"(inner|middle|doomed|left)\d+: ", line), err


def test_inner_thread_pool_shows_in_the_parent(
    start_method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = multiprocessing.get_context(start_method)
    with shoal.Pool(2, context=ctx) as pool:
        assert pool.map(nested.inner_threads, [10, 20, 30], progress="outer") == [45, 190, 435]
    lines = [_done_line(WORKER, f"inner{n}", n) for n in (10, 20, 30)]
    lines.append(re.compile(r"^outer: 3/3 \(100%\) done", re.MULTILINE))
    err = _stderr_showing(capsys, *lines)
    for line in lines:
        assert line.search(err), err
    _no_worker_drawn_bars(err)


@pytest.mark.parametrize("outer", ["executor", "map"])
def test_outer_executor_and_map(outer: str, capsys: pytest.CaptureFixture[str]) -> None:
    if outer == "executor":
        with shoal.ProcessPoolExecutor(2) as ex:
            out = list(ex.map(nested.inner_threads, [10, 20], progress=True))
        who = r"ShoalExecutorWorker-\d+"
    else:
        out = shoal.map(nested.inner_threads, [10, 20], workers=2, progress=True)
        who = r"ShoalMapProcessWorker-\d+"
    assert out == [45, 190]
    lines = [_done_line(who, f"inner{n}", n) for n in (10, 20)]
    err = _stderr_showing(capsys, *lines)
    for line in lines:
        assert line.search(err), err
    _no_worker_drawn_bars(err)


@pytest.mark.parametrize("inner", ["thread-pool", "shoal.map"])
def test_without_an_outer_bar_inner_lines_still_show(
    inner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = nested.inner_threads if inner == "thread-pool" else nested.inner_map
    with shoal.Pool(2) as pool:
        assert pool.map(fn, [10, 20]) == [45, 190]
    lines = [_done_line(WORKER, f"inner{n}", n) for n in (10, 20)]
    err = _stderr_showing(capsys, *lines)
    for line in lines:
        assert line.search(err), err
    _no_worker_drawn_bars(err)


def test_two_levels_down(capsys: pytest.CaptureFixture[str]) -> None:
    """A worker's worker's inner call travels up through both pipes, named by both workers."""
    with shoal.Pool(1) as pool:
        assert pool.map(nested.inner_processes, [10]) == [45 + 55]
    lines = [
        _done_line(WORKER, "middle10", 2),
        _done_line(f"{WORKER} > {WORKER}", "inner10", 10),
        _done_line(f"{WORKER} > {WORKER}", "inner11", 11),
    ]
    err = _stderr_showing(capsys, *lines)
    for line in lines:
        assert line.search(err), err
    _no_worker_drawn_bars(err)


def test_a_killed_worker_closes_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with shoal.Pool(1) as pool:
        with pytest.raises(shoal.WorkerDied):
            pool.map(nested.inner_then_die, [20], progress="outer")
        # The pool goes on, with a new worker.
        assert pool.map(nested.inner_threads, [10]) == [45]
    doomed = re.compile(
        rf"^{WORKER}: doomed20: (\d+)/20 \(\d+%\), 0 failed, ended after \d+\.\d s: "
        r"its worker ended \(exit code -9\)$",
        re.MULTILINE,
    )
    err = _stderr_showing(capsys, doomed, _done_line(WORKER, "inner10", 10))
    m = doomed.search(err)
    assert m and int(m[1]) <= 5, err
    assert _done_line(WORKER, "inner10", 10).search(err), err
    _no_worker_drawn_bars(err)


def test_a_task_that_returns_first_ends_its_inner_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An inner call still going when its task returns: the parent's line ends with the task
    (no bar left open for ever), and later counts do not open it again."""
    pool = shoal.Pool(1)
    assert pool.map(nested.inner_left_running, [7]) == [7]
    ended = re.compile(
        rf"^{WORKER}: left7: 0/7 \(0%\), 0 failed, ended after \d+\.\d s: its task ended first$",
        re.MULTILINE,
    )
    err = _stderr_showing(capsys, ended)
    assert ended.search(err), err
    # Nor does the pool's end close it again (join: the pool's lines are all drawn by then).
    pool.terminate()
    pool.join()
    err += capsys.readouterr().err
    assert err.count("left7") == 1, err


def test_progress_frames_are_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    with shoal.Pool(1) as pool:
        [(frames, took, kind)] = pool.map(nested.frames_for_tiny_items, [10_000])
    assert kind == "RemoteBar"  # the worker does not draw
    # At most one frame per interval while it runs (the sender may tick once more), plus the
    # final one; at least the final one.
    assert 1 <= frames <= took / _relay.INTERVAL + 2, (frames, took)
    line = _done_line(WORKER, "same", 10_000)
    assert line.search(_stderr_showing(capsys, line))


def test_a_bar_in_the_parent_process_is_not_remote() -> None:
    assert _relay.in_worker() is None
    with shoal.ThreadPool(1) as pool:
        result: Any = pool.map_async(abs, [-1], progress="here")
        result.get()
    assert type(result.progress).__name__ == "ProgressBar"


TERMINAL_SCRIPT = textwrap.dedent(
    """
    import sys
    import shoal
    from shoal.observe import ProgressBar
    from helpers import nested

    if __name__ == "__main__":
        kind = sys.argv[1]
        with shoal.Pool(2) as pool:
            bar = ProgressBar(total=2, desc="outer", kind=kind) if kind != "none" else False
            print("result:", pool.map(nested.inner_threads, [10, 20], progress=bar))
    """
)


def _in_terminal(kind: str, tmp_path: Path) -> str:
    """Run TERMINAL_SCRIPT on a 100x30 pseudo-terminal; everything it wrote."""
    script = tmp_path / "nested_terminal.py"
    script.write_text(TERMINAL_SCRIPT)
    src = str(Path(shoal.__file__).resolve().parent.parent)
    tests = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join([src, tests])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, str(script), kind],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(LIVE) == 0
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "result: [45, 190]" in out, out
    return out


@pytest.mark.parametrize("kind", ["tqdm", "none"])
def test_tqdm_bars_for_inner_calls_in_a_terminal(kind: str, tmp_path: Path) -> None:
    out = _in_terminal(kind, tmp_path)
    for n in (10, 20):
        assert re.search(rf"{WORKER}: inner{n}: 100%\|.*\| {n}/{n} ", out), out
    # No plain line from a bar drawn inside a worker.
    assert not re.search(r"inner\d+: \d+/\d+ \(", out), out


def test_rich_rows_for_inner_calls_in_a_terminal(tmp_path: Path) -> None:
    out = _in_terminal("rich", tmp_path)
    for n in (10, 20):
        assert re.search(rf"{WORKER}: inner{n} .*{n}/{n}", out), out


def test_shoal_map_in_a_forked_worker_after_the_parent_used_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The forked worker inherits the parent's shoal.map pools but not their threads: it must
    make its own, not hand its items to threads that do not exist (it hung)."""
    assert shoal.map(nested.same, range(3), workers=2, backend="thread") == [0, 1, 2]
    with shoal.Pool(2, context=multiprocessing.get_context("fork")) as pool:
        assert pool.map(nested.inner_map, [10, 20]) == [45, 190]
    line = _done_line(WORKER, "inner10", 10)
    assert line.search(_stderr_showing(capsys, line))


EXIT_SCRIPT = textwrap.dedent(
    """
    import shoal
    from helpers import nested

    if __name__ == "__main__":
        # shoal.map first: its pool registers the exit hook that ends pools before weakref's.
        shoal.map(nested.same, range(3), workers=2, backend="thread")
        with shoal.Pool(2) as pool:
            pool.map(nested.same, range(10))
        print("exiting")
    """
)


def test_a_script_exits_after_shoal_map_then_a_pool(tmp_path: Path) -> None:
    """weakref's exit hook closed a pool's wake-up pipe while its manager still ran, so the
    manager slept through the pool's end and the exit hook waited for it for ever (a race: a
    few runs)."""
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    src = str(Path(shoal.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).parent)])}
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=LIVE
        )
        assert proc.returncode == 0 and proc.stdout == "exiting\n", proc.stderr
