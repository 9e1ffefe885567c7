"""How a task's failure travels from a worker to the caller, and what the caller finally sees.

A backend reports a failed item as a :class:`Failure`: what went wrong (its kind), the exception,
the worker's formatted traceback and which worker it was. The facade then turns it into the
exception its stdlib twin would raise (:meth:`Failure.to_exception`), so the backends stay
facade-neutral.
"""

from __future__ import annotations

import reprlib
import traceback
from typing import Any

from shoal._errors import EncodingError, TransportError, WorkerDied

__all__ = [
    "BROKEN",
    "CANCELLED",
    "DIED",
    "ENCODE",
    "RAISED",
    "TIMEOUT",
    "TRANSPORT",
    "Failure",
    "format_remote",
    "short_repr",
]

#: The task raised; ``exc`` is its exception.
RAISED = "raised"
#: The task's result could not be pickled in the worker; ``exc`` is the pickling error.
ENCODE = "encode"
#: The worker died while it held the task; ``exc`` is a WorkerDied.
DIED = "died"
#: The task or its result could not be unpickled; ``exc`` is the unpickling error.
TRANSPORT = "transport"
#: The task ran past its time limit and its worker was stopped; ``exc`` is a TaskTimeout.
TIMEOUT = "timeout"
#: The task was dropped before it ran (shutdown with cancel, terminate); ``exc`` says why.
CANCELLED = "cancelled"
#: The backend can run nothing (a failed initializer); ``exc`` says why.
BROKEN = "broken"

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = 4
_repr.maxtuple = 4
_repr.maxdict = 4
_repr.maxlevel = 2


def short_repr(value: object) -> str:
    """A repr that stays short whatever the value (for notes and statistics)."""
    try:
        return _repr.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        return f"<{type(value).__name__} object>"


def format_remote(exc: BaseException) -> str:
    """The traceback text a worker sends along with its exception."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class Failure:
    """One failed item, as a backend reports it."""

    __slots__ = ("args", "detail", "exc", "history", "kind", "pid", "tb")

    def __init__(
        self,
        kind: str,
        exc: BaseException | None,
        tb: str | None = None,
        pid: int | None = None,
        detail: str | None = None,
        args: str | None = None,
    ) -> None:
        self.kind = kind
        self.exc = exc
        self.tb = tb
        self.pid = pid
        #: For ENCODE: a repr of the result that could not be pickled.
        self.detail = detail
        #: A short repr of the task's arguments, for the error's note (set by the backend).
        self.args = args
        #: Earlier failed attempts of the same task (set by the backend when it retried it).
        self.history: list[str] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failure, (self.kind, self.exc, self.tb, self.pid, self.detail))

    def __repr__(self) -> str:
        return f"Failure({self.kind}, {self.exc!r}, pid={self.pid})"

    def to_exception(
        self,
        *,
        remote_tb: type[Exception] | None,
        pool_style: bool,
        task: object = None,
    ) -> BaseException:
        """The exception the caller sees.

        Args:
            remote_tb: the facade's stdlib class for a worker's traceback (set as ``__cause__``),
                or None for the thread backend, whose exceptions keep their own traceback.
            pool_style: True for the multiprocessing.Pool facade, where an unpicklable result
                is an ``EncodingError`` (a ``MaybeEncodingError``); executors raise the pickling
                error itself.
            task: the task's index, for the note.
        """
        exc = self._base_exception(remote_tb, pool_style, task)
        if self.history:
            total = len(self.history) + 1
            for n, earlier in enumerate(self.history, 1):
                _note(exc, f"shoal: attempt {n} of {total} failed: {earlier}")
        return exc

    def describe(self) -> str:
        """One line for the history of a retried task."""
        return f"{type(self.exc).__name__}: {self.exc}" if self.exc is not None else self.kind

    def _base_exception(
        self, remote_tb: type[Exception] | None, pool_style: bool, task: object
    ) -> BaseException:
        exc = self.exc
        if self.kind == ENCODE and pool_style:
            # MaybeEncodingError repr()s the value it is given; the detail is a repr already.
            wrapped: BaseException = EncodingError(exc, _Shown(self.detail))
            note = f"shoal: the result of task {task} in worker pid {self.pid} could not be pickled"
            if self.args is not None:
                note += f"; arguments {self.args}"
            _note(wrapped, note)
            return wrapped
        if self.kind == TRANSPORT:
            err = TransportError(
                f"task {task} could not be transported: {exc!r}" if task is not None
                else f"a task could not be transported: {exc!r}"
            )
            err.__cause__ = exc
            return err
        if self.kind == TIMEOUT:
            assert exc is not None
            return exc
        if self.kind == DIED:
            assert isinstance(exc, WorkerDied)
            if exc.task is None and task is not None:
                exc = WorkerDied(exc.pid, exc.exitcode, task)
            return exc
        assert exc is not None
        if remote_tb is not None and self.tb is not None:
            exc.__cause__ = remote_tb(self.tb)
            note = f"shoal: raised by task {task} in worker pid {self.pid}"
            if self.args is not None:
                note += f", arguments {self.args}"
            _note(exc, note)
        return exc


class _Shown(str):
    """A string whose repr is itself (a repr made in the worker, shown as it is)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _note(exc: BaseException, note: str) -> None:
    try:
        exc.add_note(note)
    except Exception:  # noqa: BLE001 - an exception class may forbid attributes
        pass
