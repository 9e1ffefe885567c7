"""Points the stdlib's Pool and executors at shoal, for running CPython's own tests against shoal.

Installed into the test environment's site-packages (with a ``.pth`` file that calls
:func:`activate`) by ``install_switch.py``, because CPython's tests start isolated subprocesses
(``python -I``) that read no environment variables for ``sys.path`` but still run site-packages'
``.pth`` files. It does nothing unless ``SHOAL_STDLIB_SWITCH=1``.

While active, constructing a stdlib pool or executor is recorded: a line per construction is
appended to the file named by ``SHOAL_STDLIB_LOG`` (the harness asserts it stays empty), in this
process and in every subprocess.
"""

from __future__ import annotations

import os

_activated = False

#: The stdlib classes the switch replaced, by the kind it records them as (for the harness's
#: own check that a construction does get recorded).
ORIGINALS: dict[str, type] = {}


def _record(kind: str) -> None:
    path = os.environ.get("SHOAL_STDLIB_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} constructed stdlib {kind}\n")


def _guard(cls: type, kind: str) -> None:
    ORIGINALS[kind] = cls
    original = cls.__init__

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _record(kind)
        original(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]


def activate() -> None:
    global _activated
    if os.environ.get("SHOAL_STDLIB_SWITCH") != "1" or _activated:
        return
    # Once only: in a venv, site runs the site-packages .pth files twice (from venv() and again
    # from addsitepackages()), and a second pass would guard shoal's own classes.
    _activated = True
    import concurrent.futures
    import concurrent.futures.process
    import concurrent.futures.thread
    import multiprocessing.dummy
    import multiprocessing.pool

    import shoal

    _guard(multiprocessing.pool.Pool, "multiprocessing.pool.Pool")
    _guard(concurrent.futures.process.ProcessPoolExecutor, "ProcessPoolExecutor")
    _guard(concurrent.futures.thread.ThreadPoolExecutor, "ThreadPoolExecutor")
    # multiprocessing.pool.ThreadPool subclasses Pool: guarded through Pool.__init__.

    multiprocessing.pool.Pool = shoal.Pool  # type: ignore[misc]
    multiprocessing.pool.ThreadPool = shoal.ThreadPool  # type: ignore[misc]
    concurrent.futures.process.ProcessPoolExecutor = shoal.ProcessPoolExecutor  # type: ignore[misc]
    concurrent.futures.thread.ThreadPoolExecutor = shoal.ThreadPoolExecutor  # type: ignore[misc]
    concurrent.futures.ProcessPoolExecutor = shoal.ProcessPoolExecutor  # type: ignore[attr-defined]
    concurrent.futures.ThreadPoolExecutor = shoal.ThreadPoolExecutor  # type: ignore[attr-defined]
