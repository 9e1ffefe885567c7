"""Run CPython's multiprocessing Pool tests against shoal, under one start method.

Usage::

    SHOAL_STDLIB_SWITCH=1 python tests/stdlib/run_mp_pool_tests.py fork
    SHOAL_STDLIB_SWITCH=1 python tests/stdlib/run_mp_pool_tests.py spawn WithThreadsTestPool

Runs ``_TestPool``, ``_TestPoolWorkerErrors`` and ``_TestPoolWorkerLifetime`` of
``test._test_multiprocessing`` (processes and threads variants) with unittest, in this interpreter,
with the stdlib switch active: ``multiprocessing.Pool`` is ``shoal.Pool`` and
``multiprocessing.dummy.Pool`` is ``shoal.ThreadPool``, here and in every subprocess the tests
start (see ``_shoal_stdlib_switch.py``). Warnings are errors inside the tests. Exits 0 only if
every selected test passed or was skipped (test_stdlib_multiprocessing.py compares the skips
with those docs/compat.md lists) and no exception went unseen (unraisable, or one that ended a
thread); 1 otherwise; 2 if the switch is not active (the tests would then run the stdlib's own
Pool and prove nothing).

The last line on stdout is ``SHOAL-MP-SUMMARY {json}``: counts the harness reports.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import multiprocessing
import multiprocessing.pool
import os
import sys
import threading
import time
import unittest

SUMMARY_PREFIX = "SHOAL-MP-SUMMARY "


class _TimedResult(unittest.TextTestResult):
    """Records each test's wall time, to report the slowest."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.durations: dict[str, float] = {}
        self._t0 = 0.0

    def startTest(self, test: unittest.TestCase) -> None:
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        self.durations[test.id()] = time.monotonic() - self._t0


def _switch_active() -> str | None:
    """None if the stdlib's Pool classes are shoal's, else what is wrong."""
    import shoal

    if os.environ.get("SHOAL_STDLIB_SWITCH") != "1":
        return "SHOAL_STDLIB_SWITCH=1 is not set"
    pool_cls: object = multiprocessing.pool.Pool
    thread_pool_cls: object = multiprocessing.pool.ThreadPool
    if pool_cls is not shoal.Pool:
        return (
            "multiprocessing.pool.Pool is not shoal.Pool: the switch is not installed in this "
            "interpreter's site-packages (run tests/stdlib/install_switch.py)"
        )
    if thread_pool_cls is not shoal.ThreadPool:
        return "multiprocessing.pool.ThreadPool is not shoal.ThreadPool"
    return None


class _Stray:
    """Exceptions nobody sees otherwise: unraisable ones (``__del__``, finalizers) and those that
    end a thread. regrtest reports both; here either fails the run."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def install(self) -> None:
        sys.unraisablehook = self._unraisable
        threading.excepthook = self._thread

    def _unraisable(self, info: sys.UnraisableHookArgs) -> None:
        what = f"{info.exc_type.__name__}: {info.exc_value}"
        self.seen.append(f"unraisable in {info.object!r}: {what}")
        sys.__unraisablehook__(info)

    def _thread(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        self.seen.append(f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")
        threading.__excepthook__(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start_method", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("tests", nargs="*", help="test ids or prefixes, e.g. WithThreadsTestPool")
    parser.add_argument(
        "--hang-timeout",
        type=float,
        default=0.0,
        help="dump every thread's traceback and exit after this many seconds (0: never)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="one character per test")
    args = parser.parse_intermixed_args(argv)

    problem = _switch_active()
    if problem is not None:
        print(f"run_mp_pool_tests: {problem}", file=sys.stderr)
        return 2
    if args.hang_timeout > 0:
        faulthandler.dump_traceback_later(args.hang_timeout, exit=True)

    stray = _Stray()
    stray.install()

    import _mp_pool_suite

    _mp_pool_suite.configure(args.start_method)
    tests = _mp_pool_suite.suite(args.tests or None)
    runner = unittest.TextTestRunner(
        stream=sys.stderr,
        verbosity=1 if args.quiet else 2,
        warnings="error",
        resultclass=_TimedResult,
    )
    started = time.monotonic()
    result = runner.run(tests)
    elapsed = time.monotonic() - started
    if args.hang_timeout > 0:
        faulthandler.cancel_dump_traceback_later()

    durations = getattr(result, "durations", {})
    slowest = sorted(durations.items(), key=lambda kv: -kv[1])[:8]
    print("slowest tests:", file=sys.stderr)
    for name, seconds in slowest:
        print(f"  {seconds:7.2f}s  {name}", file=sys.stderr)
    summary = {
        "start_method": args.start_method,
        "run": result.testsRun,
        "failures": len(result.failures),
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "unexpected_successes": len(result.unexpectedSuccesses),
        "skips": {test.id(): reason for test, reason in result.skipped},
        "stray_exceptions": stray.seen,
        "seconds": round(elapsed, 1),
        "pool": f"{multiprocessing.pool.Pool.__module__}.{multiprocessing.pool.Pool.__qualname__}",
    }
    sys.stderr.flush()
    print(SUMMARY_PREFIX + json.dumps(summary, sort_keys=True), flush=True)
    if result.testsRun == 0:
        print("run_mp_pool_tests: no test ran", file=sys.stderr)
        return 1
    if stray.seen:
        print("run_mp_pool_tests: exceptions outside the tests:", file=sys.stderr)
        for line in stray.seen:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
