"""What the workers run in ``python -m bench.faults_matrix``: one function per way a task can go
wrong, importable by every library's workers (fork, spawn or forkserver alike).

Kept apart from ``bench.tasks`` (the speed benchmarks' functions) so either can change alone.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

__all__ = [
    "PickleFault",
    "TaskFault",
    "fails_to_pickle",
    "fails_to_unpickle",
    "os_exit",
    "pid_after",
    "pid_then_sleep",
    "raise_error",
    "return_fails_to_pickle",
    "return_fails_to_unpickle",
    "segfault",
    "square",
    "sys_exit",
    "take",
]


class TaskFault(Exception):
    """What :func:`raise_error` raises."""


class PickleFault(Exception):
    """Raised while pickling or unpickling one of the objects below."""


def _unpickle_fault() -> Any:
    raise PickleFault("planned failure while unpickling")


class _FailsToPickle:
    def __reduce__(self) -> Any:
        raise PickleFault("planned failure while pickling")


class _FailsToUnpickle:
    def __reduce__(self) -> Any:
        return (_unpickle_fault, ())


def fails_to_pickle() -> Any:
    """An object whose pickling raises :class:`PickleFault`."""
    return _FailsToPickle()


def fails_to_unpickle() -> Any:
    """An object that pickles, and whose unpickling raises :class:`PickleFault`."""
    return _FailsToUnpickle()


# ---- tasks -----------------------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def take(_arg: Any) -> str:
    return "ran"


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: a real SIGSEGV


def os_exit() -> None:
    os._exit(1)


def sys_exit() -> None:
    sys.exit()  # SystemExit(None): the process would exit with status 0


def raise_error() -> None:
    raise TaskFault("planned failure")


def return_fails_to_pickle() -> Any:
    return _FailsToPickle()


def return_fails_to_unpickle() -> Any:
    return _FailsToUnpickle()


def pid_then_sleep(path: str, seconds: float) -> int:
    """Write the worker's pid to ``path`` (so the driver knows the task started), then sleep,
    touching ``path + ".beat"`` every 50 ms (so the driver can tell whether it still runs)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)
    beat = f"{path}.beat"
    with open(beat, "w"):
        pass
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        os.utime(beat)
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
