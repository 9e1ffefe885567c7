"""CPython 3.13's own ``concurrent.futures`` tests, run against shoal's executors.

The modules ``as_completed``, ``wait``, ``init``, ``shutdown``, ``deadlock``, ``process_pool`` and
``thread_pool`` of ``test.test_concurrent_futures`` (a package only since 3.13), every class the
package builds from its mixins, one interpreter per executor variant: ``run_futures_tests.py``
runs them with the stdlib switch on (``SHOAL_STDLIB_SWITCH=1``), so
``concurrent.futures.ProcessPoolExecutor`` and ``ThreadPoolExecutor`` are shoal's, also in the
``python -I`` subprocesses the tests start. No stdlib executor may be constructed anywhere (the
switch logs each one to ``SHOAL_STDLIB_LOG``), and every skip must be one docs/compat.md lists.

About two and a half minutes in all on a 2-core machine (spawn and forkserver take about a
minute each).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
from _harness import run_runner

if sys.version_info < (3, 13):
    pytest.skip(
        "CPython's test.test_concurrent_futures is a package (the form these tests need) only "
        "from Python 3.13; run `nox -s futures-3.13`",
        allow_module_level=True,
    )
pytest.importorskip(
    "test.test_concurrent_futures.util",
    reason="this Python was built without its test package (test.test_concurrent_futures)",
)

HERE = pathlib.Path(__file__).parent
RUNNER = HERE / "run_futures_tests.py"
COMPAT = HERE.parent.parent / "docs" / "compat.md"
SUMMARY_PREFIX = "SHOAL-FUTURES-SUMMARY "
MODULES = ("as_completed", "wait", "init", "shutdown", "deadlock", "process_pool", "thread_pool")

#: Seconds one run may take (the slowest takes about 60 s here); a hang dumps every thread's
#: traceback a little before the subprocess is killed.
RUN_TIMEOUT = 300
HANG_DUMP = 270

_PROCESS = ("ProcessPoolFork", "ProcessPoolForkserver", "ProcessPoolSpawn")

#: CPython's own skips (``Class.test`` -> its reason).
CPYTHON_SKIPS = {
    **{
        f"{v}ProcessPoolExecutorTest.test_max_workers_too_large": "Windows-only process limit"
        for v in _PROCESS
    },
    **{
        f"{v}ProcessPoolShutdownTest.test_hang_gh83386": (
            "Hangs, see https://github.com/python/cpython/issues/83386"
        )
        for v in _PROCESS
    },
    **{
        f"ProcessPoolForkProcessPoolExecutorTest.{t}": "Incompatible with the fork start method."
        for t in (
            "test_idle_process_reuse_one",
            "test_idle_process_reuse_multiple",
            "test_max_tasks_early_shutdown",
        )
    },
}

#: shoal's skips (the runner's SKIPS), each listed in docs/compat.md.
SHOAL_SKIPS = {
    *(f"{v}ProcessPoolExecutorTest.test_killed_child" for v in _PROCESS),
    *(f"{v}ProcessPoolExecutorTest.test_python_finalization_error" for v in _PROCESS),
    "ProcessPoolForkserverProcessPoolExecutorTest.test_saturation",
    "ProcessPoolSpawnProcessPoolExecutorTest.test_saturation",
    "ProcessPoolForkserverProcessPoolShutdownTest.test_processes_terminate",
    "ProcessPoolSpawnProcessPoolShutdownTest.test_processes_terminate",
}

#: pytest id -> the runner's --variants ("other": classes built for no executor, such as
#: FailingInitializerResourcesTest, which makes spawn and forkserver executors itself).
RUNS = {
    "thread": "thread",
    "fork": "fork",
    "forkserver": "forkserver",
    "spawn": "spawn,other",
}


def _variant(cls_name: str) -> str:
    if cls_name.startswith("ThreadPool"):
        return "thread"
    for prefix, variant in (
        ("ProcessPoolForkserver", "forkserver"),
        ("ProcessPoolSpawn", "spawn"),
        ("ProcessPoolFork", "fork"),
    ):
        if cls_name.startswith(prefix):
            return variant
    return "other"


def _expected_tests(variants: set[str]) -> set[str]:
    """``Class.test`` of every test of the selected variants, as unittest finds them in the
    package (counted here, apart from the runner, so a test the runner loses fails)."""
    import importlib
    import unittest

    loader = unittest.TestLoader()
    found = set()
    for module in MODULES:
        mod = importlib.import_module(f"test.test_concurrent_futures.test_{module}")
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, unittest.TestCase)
                and obj.__module__ == mod.__name__
                and _variant(name) in variants
            ):
                found.update(f"{name}.{test}" for test in loader.getTestCaseNames(obj))
    return found


def _short(test_id: str) -> str:
    """``test.test_concurrent_futures.test_x.Class.test`` -> ``Class.test``."""
    return ".".join(test_id.split(".")[-2:])


def _run(variants: str, log: pathlib.Path) -> tuple[int, str, str, dict[str, Any]]:
    """Run the runner in its own interpreter: (exit code, stdout, stderr, its summary)."""
    return run_runner(
        RUNNER, ["--variants", variants, "--hang-timeout", str(HANG_DUMP)], log,
        timeout=RUN_TIMEOUT, label=variants, summary_prefix=SUMMARY_PREFIX,
    )


@pytest.mark.futures
@pytest.mark.stdlib
@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("run", list(RUNS))
def test_cpython_futures_tests(run: str, tmp_path: pathlib.Path) -> None:
    variants = set(RUNS[run].split(","))
    log = tmp_path / "stdlib-constructions.log"
    code, stdout, stderr, summary = _run(RUNS[run], log)
    output = f"--- stdout ---\n{stdout[-6000:]}\n--- stderr ---\n{stderr[-30000:]}"
    assert code != 2, (
        "the stdlib switch is not active in this interpreter: run "
        f"`python tests/stdlib/install_switch.py` in this environment\n{output}"
    )
    assert summary, f"no summary line from the runner (exit code {code})\n{output}"
    failed = summary["failures"] + summary["errors"] + summary["unexpected_successes"]
    assert not failed, f"CPython's concurrent.futures tests failed ({run}): {failed}\n{output}"
    assert not summary["escaped"], f"exceptions escaped threads: {summary['escaped']}\n{output}"
    assert code == 0, f"the runner failed ({run})\n{output}"

    expected = _expected_tests(variants)
    assert summary["run"] == len(expected), (summary["run"], len(expected))
    skipped = {_short(test): reason for test, reason in summary["skipped"].items()}
    assert skipped.keys() <= expected
    cpython = {t: r for t, r in CPYTHON_SKIPS.items() if t in expected}
    ours = {t for t in SHOAL_SKIPS if t in expected}
    assert {t: r for t, r in skipped.items() if t not in ours} == cpython, (
        "skips changed: list each one in docs/compat.md and here",
        skipped,
    )
    assert ours <= skipped.keys(), ours - skipped.keys()

    constructed = log.read_text() if log.exists() else ""
    assert constructed == "", f"a stdlib executor was constructed:\n{constructed}"


@pytest.mark.futures
def test_switch_records_a_stdlib_executor(tmp_path: pathlib.Path) -> None:
    """The log the test above reads does record a stdlib executor (else "empty" would prove
    nothing), also from an isolated (``-I``) subprocess, as CPython's tests start them."""
    log = tmp_path / "log"
    env = dict(os.environ, SHOAL_STDLIB_SWITCH="1", SHOAL_STDLIB_LOG=str(log))
    code = (
        "import concurrent.futures as cf, shoal, _shoal_stdlib_switch as s\n"
        "assert cf.ThreadPoolExecutor is shoal.ThreadPoolExecutor\n"
        "assert cf.ProcessPoolExecutor is shoal.ProcessPoolExecutor\n"
        "s.ORIGINALS['ThreadPoolExecutor'](1).shutdown()\n"
        "s.ORIGINALS['ProcessPoolExecutor'](1).shutdown()\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("constructed stdlib ThreadPoolExecutor"), lines
    assert lines[1].endswith("constructed stdlib ProcessPoolExecutor"), lines


@pytest.mark.futures
def test_every_skip_is_documented() -> None:
    """docs/compat.md's concurrent.futures section names every test shoal skips, and CPython's
    own skips."""
    text = COMPAT.read_text()
    start = text.index("### concurrent.futures (3.13)")
    section = text[start:]
    following = re.search(r"\n#{1,3} ", section[1:])
    if following:
        section = section[: following.start() + 1]
    for test in sorted(SHOAL_SKIPS | CPYTHON_SKIPS.keys()):
        assert test.split(".")[1] in section, f"{test} is not in docs/compat.md"
