"""The soak (``python -m bench.soak``) in its short form: 100,000 tiny tasks per facade and 100
worker replacements, with the parent's RSS, fds, threads, Python heap, /dev/shm entries and
children checked. Slow (about a minute): run by ``nox -s slow``, not by the default CI run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_soak_stays_within_its_bounds() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=840, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    assert "OK:" in proc.stdout
