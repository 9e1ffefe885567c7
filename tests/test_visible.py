"""Progress, traces and statistics as the facades offer them (the observe layer's own tests are
in tests/observe/)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import shoal
from helpers import faults


def nap(x: int) -> int:
    time.sleep(0.005)
    return x


def nap_longest_on_seven(x: int) -> int:
    time.sleep(0.15 if x == 7 else 0.005)
    return x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


PROGRESS_SCRIPT = textwrap.dedent(
    """
    import shoal, sys
    from helpers.faults import square

    if __name__ == "__main__":
        how = sys.argv[1]
        if how == "pool":
            with shoal.Pool(2) as pool:
                out = pool.map(square, range(40), progress="squares")
        elif how == "imap":
            with shoal.Pool(2) as pool:
                out = list(pool.imap(square, range(40), progress=True))
        elif how == "executor":
            with shoal.ProcessPoolExecutor(2) as ex:
                out = list(ex.map(square, range(40), progress=True))
        else:
            out = shoal.map(square, range(40), workers=2, progress=True)
        assert out == [x * x for x in range(40)]
        print("OK")
    """
)


@pytest.mark.parametrize("how", ["pool", "imap", "executor", "map"])
def test_progress_in_a_pipe_prints_plain_lines(how: str, tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(tmp_path, "progress_script.py")
    with open(script, "w") as f:
        f.write(PROGRESS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.run(
        [sys.executable, script, how], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
    assert "\r" not in proc.stderr  # no carriage-return animation in a log
    lines = [line for line in proc.stderr.splitlines() if "40/40" in line]
    assert lines, proc.stderr


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_trace_records_every_task_with_its_worker(kind: str) -> None:
    cls = shoal.Pool if kind == "process" else shoal.ThreadPool
    pool = cls(2, trace=True)
    assert pool.map(nap, range(12), chunksize=1) == list(range(12))
    with pytest.raises(ValueError):
        pool.map(fails_on_three, range(6), chunksize=1)  # fails fast: 4 and 5 may still run
    pids = {h.pid for h in pool._pool} if kind == "process" else set()
    pool.close()
    pool.join()  # every task has ended, and been recorded
    timeline = pool.timeline
    tasks = timeline.tasks()
    assert len(tasks) == 18
    assert {t.worker for t in tasks} <= set(timeline.workers())
    assert len({t.worker for t in tasks}) == 2
    assert all(t.end >= t.start for t in tasks)
    assert [t.index for t in tasks if not t.ok] == [3]
    if kind == "process":
        assert {t.pid for t in tasks} <= pids


def test_executor_trace_and_statistics() -> None:
    with shoal.ProcessPoolExecutor(2, trace=True) as ex:
        assert list(ex.map(nap, range(10))) == list(range(10))
        stats = ex.statistics()
        assert len(ex.timeline.tasks()) == 10
    assert stats.tasks_done == 10
    assert stats.tasks_failed == 0


def test_statistics_show_where_time_went() -> None:
    with shoal.Pool(2) as pool:
        pool.map(nap_longest_on_seven, range(20), chunksize=1)
        with pytest.raises(ValueError):
            pool.apply(fails_on_three, (3,))
        pool.apply(faults.square, (4,))
        stats = pool.statistics()
    assert stats.tasks_done == 22
    assert stats.tasks_failed == 1
    assert stats.workers_started == 2
    assert len(stats.workers) == 2
    assert sum(w.tasks for w in stats.workers) == 22
    assert all(0.0 <= w.busy_fraction <= 1.0 for w in stats.workers)
    assert stats.user_time >= 20 * 0.005 * 0.9
    assert stats.transport_time >= 0 and stats.idle_time >= 0
    # Task 7 naps 30 times longer than the rest, so on a loaded machine it stays among the ten
    # slowest even if a few fast tasks are slowed down (CI once saw the failing apply take 9 ms).
    seconds = [s.seconds for s in stats.slowest]
    assert seconds == sorted(seconds, reverse=True)
    seven = [s for s in stats.slowest if s.args == "7"]  # the short repr of the task's argument
    assert len(seven) == 1 and seven[0].seconds >= 0.14 and seven[0].count == 1
    assert "tasks: 22 done, 1 failed" in str(stats)


def test_trace_of_tiny_tasks_counts_every_task() -> None:
    with shoal.Pool(2, trace=True) as pool:
        for _ in range(3):  # later chunks are timed as a whole (tasks under ~100 us)
            assert pool.map(faults.square, range(4000)) == [x * x for x in range(4000)]
        events = pool.timeline.tasks()
    assert sum(e.count for e in events) == 12000
    assert any(e.approximate and e.count > 1 for e in events)
