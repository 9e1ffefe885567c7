"""Task functions for the contract suite.

They live in an importable module (not in a test module, not in ``__main__``) so that every start
method sends them by reference, as a user's library functions would be.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

#: Set by the parent before it makes a pool; a forked worker sees the new value, a spawned one
#: (or one from the forkserver) sees this default. That is how the tests tell start methods apart.
MARK = "default"

#: What an initializer sets; tasks read it back.
STATE: Any = None

#: How long a gate waits at most before it gives up (a liveness ceiling, not a timing).
GATE_CEILING = 60.0


def square(x: int) -> int:
    return x * x


def identity(x: Any) -> Any:
    return x


def add(a: int, b: int) -> int:
    return a + b


def kw_call(a: int, *, b: int = 0, fn: int = 0) -> tuple[int, int, int]:
    return (a, b, fn)


def pid_of(_: Any = None) -> int:
    return os.getpid()


def read_mark(_: Any = None) -> str:
    return MARK


def touch(path: str) -> str:
    """Create the file ``path`` (evidence that the task ran)."""
    with open(path, "w"):
        pass
    return path


def set_state(value: Any) -> None:
    global STATE
    STATE = value


def read_state(_: Any = None) -> Any:
    return STATE


def fail_initializer() -> None:
    raise RuntimeError("initializer failed on purpose")


def translate(data: bytes) -> bytes:
    """A cheap transformation of every byte (the worker really touched the payload)."""
    return data.translate(SHIFT)


SHIFT = bytes((i + 1) % 256 for i in range(256))


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


class TaskError(Exception):
    """A task's own exception, with arguments that must survive the trip back."""

    def __init__(self, value: Any, pid: int) -> None:
        super().__init__(value, pid)
        self.value = value
        self.pid = pid


def fail(x: Any) -> Any:
    raise TaskError(x, os.getpid())


def fail_on(bad: Any) -> Any:
    """A function object for map: fails on item ``bad`` only."""
    return _FailOn(bad)


class _FailOn:
    def __init__(self, bad: Any) -> None:
        self.bad = bad

    def __call__(self, x: Any) -> Any:
        if x == self.bad:
            raise TaskError(x, os.getpid())
        return x * x


def unpicklable_result(x: Any) -> Any:
    """Returns something plain pickle cannot send back (a lambda)."""
    return lambda: x


def unpicklable_on(bad: Any) -> Any:
    return _UnpicklableOn(bad)


class _UnpicklableOn:
    def __init__(self, bad: Any) -> None:
        self.bad = bad

    def __call__(self, x: Any) -> Any:
        if x == self.bad:
            return lambda: x
        return x


class Unpicklable:
    """An argument that cannot be pickled."""

    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable refuses to be pickled")

    def __repr__(self) -> str:
        return "<Unpicklable>"


class Counted:
    """Counts live instances, in the process it lives in (the stdlib's CountedObject)."""

    live = 0
    lock = threading.Lock()

    def __init__(self, payload: int = 0) -> None:
        self.payload = payload
        with Counted.lock:
            Counted.live += 1

    def __del__(self) -> None:
        with Counted.lock:
            Counted.live -= 1

    def __getstate__(self) -> Any:
        return self.payload

    def __setstate__(self, state: Any) -> None:
        self.payload = state
        with Counted.lock:
            Counted.live += 1


class CallableTask:
    """A callable object: the pool must not keep it alive after its tasks are done."""

    def __call__(self, x: Any) -> Any:
        return x


def failing_gen(n: int, fail_at: int) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise KeyError(f"input generator failed at {i}")
        yield i


class Gate:
    """A one-shot gate that works across threads and processes: a file that appears.

    Tasks call :meth:`pass_` (wait until opened); the test calls :meth:`open`. ``started``
    files tell the test that a task has begun.
    """

    def __init__(self, directory: pathlib.Path | str) -> None:
        self.dir = str(directory)
        self.path = os.path.join(self.dir, f"gate-{uuid.uuid4().hex}")

    def open(self) -> None:
        with open(self.path, "w"):
            pass

    def is_open(self) -> bool:
        return os.path.exists(self.path)

    def pass_(self, value: Any) -> Any:
        with open(f"{self.path}.started-{value!r}", "w"):
            pass
        deadline = time.monotonic() + GATE_CEILING
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.002)
        return value

    def started(self, value: Any) -> bool:
        return os.path.exists(f"{self.path}.started-{value!r}")

    def wait_started(self, value: Any, ceiling: float = GATE_CEILING) -> bool:
        deadline = time.monotonic() + ceiling
        while not self.started(value):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


def through_gate(gate: Gate, value: Any) -> Any:
    return gate.pass_(value)


def gated_unless(gate: Gate, value: Any, free: Any) -> Any:
    """Waits at the gate, except for the item ``free``."""
    if value == free:
        return value
    return gate.pass_(value)
