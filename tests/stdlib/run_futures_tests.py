"""Run CPython 3.13's ``test.test_concurrent_futures`` modules against shoal's executors.

Usage::

    SHOAL_STDLIB_SWITCH=1 python tests/stdlib/run_futures_tests.py [MODULE ...]
        [--variants thread,fork,forkserver,spawn,other] [--hang-timeout SECONDS]

``MODULE`` is a module of the package without its ``test_`` prefix; the default is every module
in :data:`MODULES`. The package builds its test classes per executor from mixins (a thread pool,
then a process pool per start method: ``ThreadPool...``, ``ProcessPoolFork...``,
``ProcessPoolForkserver...``, ``ProcessPoolSpawn...``); ``--variants`` keeps some of them, and
``other`` stands for the classes built for no executor (they make their own).

The run refuses to start unless the stdlib switch has put shoal's executors in place of the
stdlib's (exit code 2; see ``_shoal_stdlib_switch.py``). It applies :data:`SKIPS` (each one is
listed, with its reason, in docs/compat.md), counts an exception that escapes a thread or is
unraisable as a failure, prints a summary line ``SHOAL-FUTURES-SUMMARY {json}`` and exits 1 if a
test failed or nothing ran.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import threading
import unittest
from collections.abc import Iterator
from typing import Any

MODULES = ("as_completed", "wait", "init", "shutdown", "deadlock", "process_pool", "thread_pool")
VARIANTS = ("thread", "fork", "forkserver", "spawn", "other")
SUMMARY_PREFIX = "SHOAL-FUTURES-SUMMARY "

_UNPICKLABLE_TASKS = (
    "the test's tasks cannot be sent (they take a multiprocessing Semaphore, which pickles only "
    "while a process starts); the stdlib starts a worker in submit() before its feeder thread "
    "fails to pickle the task, shoal fails the task in submit() and starts no worker for it, so "
    "the worker count differs. Under fork both start every worker at the first submit, and the "
    "test passes. tests/test_executor_compat.py checks the count with tasks that can be sent"
)

#: Tests shoal does not run: ``Class.test`` (or ``*.test``: every class that has it) -> why.
SKIPS: dict[str, str] = {
    "*.test_killed_child": (
        "deliberate difference: a killed worker fails only the task it ran (shoal.WorkerDied, a "
        "BrokenProcessPool) and is replaced; the executor is not broken and takes more work "
        "(tests/test_executor_compat.py::test_killed_worker_fails_only_its_task)"
    ),
    "*.test_python_finalization_error": (
        "stdlib internals: it makes the second thread the stdlib's executor starts (its queue "
        "feeder) fail to start; shoal starts no such thread, so nothing fails, and the test's "
        "own tasks (mul() given one argument) raise TypeError instead of BrokenProcessPool"
    ),
    "ProcessPoolForkserverProcessPoolExecutorTest.test_saturation": _UNPICKLABLE_TASKS,
    "ProcessPoolSpawnProcessPoolExecutorTest.test_saturation": _UNPICKLABLE_TASKS,
    "ProcessPoolForkserverProcessPoolShutdownTest.test_processes_terminate": _UNPICKLABLE_TASKS,
    "ProcessPoolSpawnProcessPoolShutdownTest.test_processes_terminate": _UNPICKLABLE_TASKS,
}

_PREFIXES = {
    # Longest first: "ProcessPoolForkserver..." also starts with "ProcessPoolFork".
    "ProcessPoolForkserver": "forkserver",
    "ProcessPoolSpawn": "spawn",
    "ProcessPoolFork": "fork",
    "ThreadPool": "thread",
}


def _check_switch() -> None:
    import concurrent.futures
    import concurrent.futures.process
    import concurrent.futures.thread

    import shoal

    if not (
        concurrent.futures.ProcessPoolExecutor is shoal.ProcessPoolExecutor
        and concurrent.futures.process.ProcessPoolExecutor is shoal.ProcessPoolExecutor
        and concurrent.futures.ThreadPoolExecutor is shoal.ThreadPoolExecutor
        and concurrent.futures.thread.ThreadPoolExecutor is shoal.ThreadPoolExecutor
    ):
        print(
            "the stdlib switch is not active: run tests/stdlib/install_switch.py in this "
            "environment and set SHOAL_STDLIB_SWITCH=1",
            file=sys.stderr,
        )
        sys.exit(2)


def _cases(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _cases(test)
        else:
            yield test


def variant_of(cls_name: str) -> str:
    for prefix, variant in _PREFIXES.items():
        if cls_name.startswith(prefix):
            return variant
    return "other"


def _skip_reason(cls_name: str, method: str) -> str | None:
    return SKIPS.get(f"{cls_name}.{method}") or SKIPS.get(f"*.{method}")


def build_suite(modules: list[str], variants: set[str]) -> unittest.TestSuite:
    """The selected tests, in the package's order, with :data:`SKIPS` applied."""
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for module in modules:
        for test in _cases(loader.loadTestsFromName(f"test.test_concurrent_futures.test_{module}")):
            cls = type(test)
            if cls.__module__ == "unittest.loader":  # an import error: let it fail loudly
                suite.addTest(test)
                continue
            if variant_of(cls.__name__) not in variants:
                continue
            name = test._testMethodName
            reason = _skip_reason(cls.__name__, name)
            if reason is not None:
                setattr(cls, name, unittest.skip(reason)(getattr(cls, name)))
            suite.addTest(test)
    return suite


class _Escaped:
    """Exceptions that escaped a thread or were unraisable during the run."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def install(self) -> None:
        previous_thread_hook = threading.excepthook
        previous_unraisable_hook = sys.unraisablehook

        def thread_hook(args: Any) -> None:
            name = args.exc_type.__name__
            self.reports.append(f"in thread {args.thread!r}: {name}: {args.exc_value}")
            previous_thread_hook(args)

        def unraisable_hook(args: Any) -> None:
            name = args.exc_type.__name__
            self.reports.append(f"unraisable in {args.object!r}: {name}: {args.exc_value}")
            previous_unraisable_hook(args)

        threading.excepthook = thread_hook
        sys.unraisablehook = unraisable_hook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--hang-timeout",
        type=float,
        default=0.0,
        help="dump every thread's stack and exit after this many seconds (0: never)",
    )
    args = parser.parse_args(argv)
    variants = set(args.variants.split(","))
    if not variants <= set(VARIANTS) or not set(args.modules) <= set(MODULES):
        parser.error(f"modules are among {MODULES}, variants among {VARIANTS}")
    _check_switch()
    if args.hang_timeout:
        faulthandler.dump_traceback_later(args.hang_timeout, exit=True)
    escaped = _Escaped()
    escaped.install()
    suite = build_suite(args.modules, variants)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    for report in escaped.reports:
        print(f"escaped exception: {report}", file=sys.stderr)
    summary = {
        "run": result.testsRun,
        "failures": [test.id() for test, _ in result.failures],
        "errors": [test.id() for test, _ in result.errors],
        "skipped": {test.id(): reason for test, reason in result.skipped},
        "unexpected_successes": [test.id() for test in result.unexpectedSuccesses],
        "escaped": escaped.reports,
    }
    # On a line of its own: CPython's tests print their timings to stdout without a newline.
    print("\n" + SUMMARY_PREFIX + json.dumps(summary, sort_keys=True), flush=True)
    ok = result.wasSuccessful() and result.testsRun > 0 and not escaped.reports
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
