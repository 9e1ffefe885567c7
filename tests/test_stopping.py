"""How a shut-down executor ends workers that are still starting (a Pool's are told to quit
once ready, as the stdlib's exit with 0: tests/stdlib/test_compat_differences.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shoal
from helpers import faults

TESTS = Path(__file__).parent


def _run_stalled(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TESTS / "helpers" / "first_worker_stalls.py"), *args],
        env={**os.environ, "PYTHONPATH": str(TESTS)}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def test_shutdown_stops_a_worker_that_is_still_starting() -> None:
    # Its first worker never gets through its start. Nothing of the user's would run in it (no
    # initializer, no worker_exit), so shutdown() stops it rather than waiting for it to be
    # ready to be told to quit: shutdown(wait=True) returns, and no worker counts as lost.
    proc = _run_stalled(timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["lost"] == 0
    assert report["exit_codes"][0] != 0  # stopped by a signal, not quit


def test_shutdown_waits_for_a_starting_worker_that_runs_an_initializer() -> None:
    # With an initializer, a starting worker is told to quit once ready (it runs the
    # initializer first, as the stdlib's do): the stalled one never is, so join() waits. (Were
    # it stopped, the script would end within a second; killed at the timeout, its stalled
    # worker sees the end of its stall pipe and exits: its parent is gone.)
    with pytest.raises(subprocess.TimeoutExpired):
        _run_stalled("--initializer", timeout=5)


def test_every_worker_an_executor_started_runs_its_initializer(tmp_path: Path) -> None:
    with shoal.ProcessPoolExecutor(
        2, initializer=faults.touch_pid_file, initargs=(str(tmp_path),)
    ) as ex:
        assert list(ex.map(faults.square, range(4))) == [0, 1, 4, 9]
    started = ex.statistics().workers_started
    assert started >= 1
    assert len(list(tmp_path.iterdir())) == started
