"""Running one of the stdlib-suite runners in its own interpreter, for the pytest wrappers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest


def run_runner(
    runner: pathlib.Path,
    args: list[str],
    log: pathlib.Path,
    *,
    timeout: float,
    label: str,
    summary_prefix: str,
) -> tuple[int, str, str, dict[str, Any]]:
    """Run ``runner`` with the stdlib switch on: (exit code, stdout, stderr, its summary).

    A run that does not end within ``timeout`` fails the test with what it printed (its own
    hang dump, written a little earlier, shows where it was).
    """
    env = dict(os.environ, SHOAL_STDLIB_SWITCH="1", SHOAL_STDLIB_LOG=str(log))
    env.pop("PYTHONWARNINGS", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(runner), *args],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(f"the {label} run hung ({timeout} s)\n{out[-6000:]}\n{err[-20000:]}")
    summary: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(summary_prefix):
            summary = json.loads(line[len(summary_prefix) :])
    return proc.returncode, proc.stdout, proc.stderr, summary
