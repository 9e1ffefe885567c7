"""CPython's multiprocessing Pool test classes, built the way CPython builds them.

``test._test_multiprocessing.install_tests_in_module_dict`` turns each ``_TestX`` base into
``WithProcessesTestX`` / ``WithThreadsTestX`` / ``WithManagerTestX`` by mixing in the type's
``Pool`` (``multiprocessing.Pool`` / ``multiprocessing.dummy.Pool``), and defines the module's
``setUpModule`` (which sets the start method). We keep only the Pool classes, processes and
threads variants (the manager one runs the stdlib's own pool inside a manager process).

The classes are built when this module is imported, independently of the start method, so a
spawned worker that unpickles ``WithProcessesTestPool._test_traceback`` (a classmethod, pickled by
reference) can import them here. :func:`configure` installs the fixtures for one start method.
"""

from __future__ import annotations

import sys
import unittest
from typing import Any

from test import _test_multiprocessing as _tm

__all__ = ["POOL_BASES", "TYPES", "HarnessCheck", "configure", "suite"]

#: The Pool test bases in ``test._test_multiprocessing``.
POOL_BASES = ("_TestPool", "_TestPoolWorkerErrors", "_TestPoolWorkerLifetime")
#: ``processes`` is ``multiprocessing.Pool``, ``threads`` is ``multiprocessing.dummy.Pool``
#: (``ThreadPool``); ``manager`` runs the stdlib's own Pool in a manager process: not shoal's.
TYPES = ("processes", "threads")

_WANTED = {
    "With" + type_.capitalize() + base[1:]
    for base in POOL_BASES
    for type_ in TYPES
    if type_ in getattr(_tm, base).ALLOWED_TYPES
}


def _install(start_method: str) -> dict[str, Any]:
    scratch: dict[str, Any] = {"__name__": __name__}
    for type_ in TYPES:
        _tm.install_tests_in_module_dict(scratch, start_method, only_type=type_)
    return scratch


# Build the classes now (the start method only matters to setUpModule).
for _name, _obj in _install("fork").items():
    if _name in _WANTED:
        globals()[_name] = _obj
del _name, _obj


_start_method = "fork"


def configure(start_method: str) -> None:
    """Install CPython's ``setUpModule``/``tearDownModule`` for ``start_method``."""
    global _start_method
    scratch = _install(start_method)
    globals()["setUpModule"] = scratch["setUpModule"]
    globals()["tearDownModule"] = scratch["tearDownModule"]
    _start_method = start_method


class HarnessCheck(unittest.TestCase):
    """The harness itself: the tests above really ran shoal, under the wanted start method."""

    def test_stdlib_pools_are_shoal(self) -> None:
        import multiprocessing.dummy

        import shoal

        pool = multiprocessing.Pool(1)
        try:
            self.assertIs(type(pool), shoal.Pool)
            # Workers run under the start method this run is for (setUpModule set it).
            self.assertEqual(multiprocessing.get_start_method(), _start_method)
            self.assertEqual(pool.apply(multiprocessing.get_start_method), _start_method)
        finally:
            pool.terminate()
            pool.join()
        threads = multiprocessing.dummy.Pool(1)
        try:
            self.assertIs(type(threads), shoal.ThreadPool)
        finally:
            threads.terminate()
            threads.join()


def suite(names: list[str] | None = None) -> unittest.TestSuite:
    """The selected classes' tests (all of them by default), in a stable order.

    Args:
        names: test ids or prefixes relative to this module (``WithThreadsTestPool`` or
            ``WithThreadsTestPool.test_terminate``), to run only those.
    """
    loader = unittest.TestLoader()
    module = sys.modules[__name__]
    if names:
        return loader.loadTestsFromNames(names, module)
    tests = unittest.TestSuite()
    for cls_name in sorted(_WANTED):
        tests.addTests(loader.loadTestsFromTestCase(getattr(module, cls_name)))
    tests.addTests(loader.loadTestsFromTestCase(HarnessCheck))
    return tests
