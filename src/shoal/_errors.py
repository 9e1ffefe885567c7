"""The whole error tree of shoal.

::

    ShoalError(Exception)
    ├── WorkerDied(ShoalError, BrokenProcessPool)    a worker process ended while it held the task
    ├── TransportError(ShoalError, BrokenProcessPool) a task or its result could not be unpickled
    ├── EncodingError(ShoalError, MaybeEncodingError) a result could not be pickled (Pool facade)
    ├── TaskTimeout(ShoalError)                       a task ran past its time and was stopped
    ├── BackendUnavailable(ShoalError, LookupError)   unknown backend, or its extra is missing
    ├── PoolBroken(ShoalError, BrokenProcessPool)     the initializer failed (process executor)
    └── ThreadPoolBroken(ShoalError, BrokenThreadPool) the initializer failed (thread executor)

Each one subclasses the stdlib type that code written for ``multiprocessing`` or
``concurrent.futures`` already catches, so changing an import keeps existing ``except`` clauses
working.
"""

from __future__ import annotations

import signal
from concurrent.futures.process import BrokenProcessPool
from concurrent.futures.thread import BrokenThreadPool
from multiprocessing.pool import MaybeEncodingError  # type: ignore[attr-defined]

__all__ = [
    "BackendUnavailable",
    "EncodingError",
    "PoolBroken",
    "ShoalError",
    "TaskTimeout",
    "ThreadPoolBroken",
    "TransportError",
    "WorkerDied",
]


class ShoalError(Exception):
    """Base class of every error that shoal itself raises."""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class WorkerDied(ShoalError, BrokenProcessPool):
    """Raised for the task a worker process was running when it died.

    Raised when the worker was killed by a signal (a segfault, SIGKILL from outside or from the
    out-of-memory killer) or exited (``os._exit``, C-level ``exit()``) while it held the task:
    while unpickling it, running it or pickling its result. Only that task fails; the worker is
    replaced and the pool goes on.

    Attributes:
        pid: the dead worker's process id.
        exitcode: its exit status as ``multiprocessing`` reports it (negative: killed by signal).
        signal: the signal number that killed it, or None.
        task: the index of the task it was running, or None.
    """

    def __init__(self, pid: int | None, exitcode: int | None, task: object = None) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        self.task = task
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.signal is not None:
            how = f"was killed by {_signal_name(self.signal)} ({self.exitcode})"
            if self.signal == signal.SIGKILL:
                how += ", possibly out of memory"
            elif self.signal == signal.SIGSEGV:
                how += ", a crash in native code"
        elif self.exitcode is not None:
            how = f"exited with code {self.exitcode}"
        else:
            how = "ended unexpectedly"
        where = f" while running task {self.task}" if self.task is not None else ""
        if where and "," in how:
            where = "," + where
        return f"worker (pid {self.pid}) {how}{where}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.pid, self.exitcode, self.task))


class TransportError(ShoalError, BrokenProcessPool):
    """Raised for a task whose payload or result could not be unpickled on the other side.

    The task is not run again; the pool goes on. ``__cause__`` holds the unpickling error.
    """


class EncodingError(ShoalError, MaybeEncodingError):  # type: ignore[misc]
    """Raised by the Pool facade for a task whose result could not be pickled in the worker.

    Keeps ``MaybeEncodingError``'s ``exc`` and ``value`` (reprs of the error and the result).
    """


class TaskTimeout(ShoalError):
    """Raised for a task that ran past its ``task_timeout``; its worker was stopped and replaced.

    Deliberately not a ``TimeoutError``: that one means "your wait ran out, try again", and a
    loop that retries on it would spin forever on a task that was stopped.
    """


class BackendUnavailable(ShoalError, LookupError):
    """Raised for an unknown backend name, or a backend whose optional extra is not installed."""


class PoolBroken(ShoalError, BrokenProcessPool):
    """Raised by the process executor after a worker's initializer failed, as the stdlib does."""


class ThreadPoolBroken(ShoalError, BrokenThreadPool):
    """Raised by the thread executor after a worker's initializer failed, as the stdlib does."""
