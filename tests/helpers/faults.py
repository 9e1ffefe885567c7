"""Ways for a task to fail, at every stage of its life (loky's crash matrix, our own code).

Each stage has four flavours: a segfault (``crash``), ``sys.exit`` (``exit``), C-level ``exit()``
that skips Python's cleanup (``c_exit``), and a plain exception (``error``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Any


class FaultError(Exception):
    """The plain exception our faults raise."""


def crash() -> None:
    # A real segfault: read address 0.
    ctypes.string_at(0)


def sys_exit() -> None:
    sys.exit(7)


def c_exit() -> None:
    ctypes.CDLL(None).exit(3)


def error() -> None:
    raise FaultError("planned failure")


FAULTS = {"crash": crash, "exit": sys_exit, "c_exit": c_exit, "error": error}


def _fire(name: str) -> Any:
    FAULTS[name]()


class FailsToPickle:
    """Fails while being pickled (in the parent for an argument, in the worker for a result)."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def __reduce__(self) -> Any:
        _fire(self.fault)
        raise AssertionError("unreachable")


class FailsToUnpickle:
    """Pickles fine; fails while being unpickled on the other side."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def __reduce__(self) -> Any:
        return (_fire, (self.fault,))


def run_fault(fault: str) -> None:
    _fire(fault)


def return_unpicklable(fault: str) -> FailsToPickle:
    return FailsToPickle(fault)


def return_fails_to_unpickle(fault: str) -> FailsToUnpickle:
    return FailsToUnpickle(fault)


def take_arg(arg: Any) -> str:
    return "ran"


def square(x: int) -> int:
    return x * x


def touch_pid_file(folder: str) -> None:
    """An initializer that leaves a file named after its process in ``folder``."""
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass


def getpid(_: Any = None) -> int:
    return os.getpid()


def sleep_and_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def wait_for_file_then_sleep(path: str, seconds: float) -> int:
    """Signal that the task started (by creating ``path``), then sleep."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def ignore_sigterm_and_sleep(seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)
