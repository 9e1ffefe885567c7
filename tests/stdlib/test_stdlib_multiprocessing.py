"""CPython's own multiprocessing Pool tests, run against shoal.

``test._test_multiprocessing``'s ``_TestPool``, ``_TestPoolWorkerErrors`` and
``_TestPoolWorkerLifetime``, processes (``shoal.Pool``) and threads (``shoal.ThreadPool``)
variants, one interpreter per start method: ``run_mp_pool_tests.py`` runs them with the stdlib
switch on (``SHOAL_STDLIB_SWITCH=1``), so ``multiprocessing.Pool`` and
``multiprocessing.dummy.Pool`` are shoal's, also in the subprocesses the tests start. Every skip
must be one docs/compat.md lists; no stdlib pool may be constructed anywhere (the switch logs
each one to ``SHOAL_STDLIB_LOG``).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
from _harness import run_runner

HERE = pathlib.Path(__file__).parent
RUNNER = HERE / "run_mp_pool_tests.py"
SUMMARY_PREFIX = "SHOAL-MP-SUMMARY "

#: Seconds a whole run may take (each takes 5-15 s on a 2-core machine); a hang dumps every
#: thread's traceback a little before the subprocess is killed.
RUN_TIMEOUT = 240
HANG_DUMP = 200

#: Tests CPython itself skips for a pool type (docs/compat.md, "CPython test suite").
EXPECTED_SKIPS = {
    "_mp_pool_suite.WithThreadsTestPool.test_map_unplicklable": "test not appropriate for threads",
}


def _expected_run() -> int:
    """How many tests the runner must run: each Pool base's test methods once per pool type it
    allows (on 3.11: processes 25 + 2 + 4, threads 25), plus the harness's own check. Counted
    here from the bases, apart from the runner's selection, so a test the runner loses fails."""
    import unittest

    from test import _test_multiprocessing as tm

    loader = unittest.TestLoader()
    total = 1
    for base in ("_TestPool", "_TestPoolWorkerErrors", "_TestPoolWorkerLifetime"):
        cls = getattr(tm, base)
        types = [t for t in cls.ALLOWED_TYPES if t in ("processes", "threads")]
        total += len(loader.getTestCaseNames(cls)) * len(types)
    return total


def _run(start_method: str, log: pathlib.Path) -> tuple[int, str, str, dict[str, Any]]:
    """Run the runner in its own interpreter: (exit code, stdout, stderr, its summary)."""
    return run_runner(
        RUNNER, [start_method, "-q", "--hang-timeout", str(HANG_DUMP)], log,
        timeout=RUN_TIMEOUT, label=start_method, summary_prefix=SUMMARY_PREFIX,
    )


@pytest.mark.stdlib
@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize(
    "start_method",
    # forkserver runs in the slow session; the default selection keeps fork and spawn.
    ["fork", "spawn", pytest.param("forkserver", marks=pytest.mark.slow)],
)
def test_cpython_pool_tests(start_method: str, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "stdlib-constructions.log"
    code, stdout, stderr, summary = _run(start_method, log)
    output = f"--- stdout ---\n{stdout[-6000:]}\n--- stderr ---\n{stderr[-20000:]}"
    assert code != 2, (
        "the stdlib switch is not active in this interpreter: run "
        f"`python tests/stdlib/install_switch.py` in this environment\n{output}"
    )
    assert code == 0, f"CPython's Pool tests failed under {start_method}\n{output}"
    assert summary, f"no summary line from the runner\n{output}"
    assert summary["pool"] == "shoal.Pool", summary
    assert summary["start_method"] == start_method
    assert summary["run"] == _expected_run(), summary
    assert summary["skips"] == EXPECTED_SKIPS, (
        "skips changed: list each in docs/compat.md and in EXPECTED_SKIPS",
        summary["skips"],
    )
    constructed = log.read_text() if log.exists() else ""
    assert constructed == "", f"a stdlib pool was constructed:\n{constructed}"


@pytest.mark.stdlib
def test_switch_records_a_stdlib_pool(tmp_path: pathlib.Path) -> None:
    """The log the test above reads does record a stdlib pool (else "empty" would prove nothing),
    also from an isolated (``-I``) subprocess, as CPython's tests start them."""
    log = tmp_path / "log"
    env = dict(os.environ, SHOAL_STDLIB_SWITCH="1", SHOAL_STDLIB_LOG=str(log))
    code = (
        "import multiprocessing.pool, shoal, _shoal_stdlib_switch as s\n"
        "assert multiprocessing.pool.ThreadPool is shoal.ThreadPool\n"
        "original = s.ORIGINALS['multiprocessing.pool.Pool']\n"
        "multiprocessing.pool.Pool = original  # its methods find their class in the module\n"
        "pool = original(1)\n"
        "pool.terminate(); pool.join()\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and "constructed stdlib multiprocessing.pool.Pool" in lines[0], lines
