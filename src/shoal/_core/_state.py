"""State that outlives a task: :func:`worker_state` and the results of ``worker_exit``.

Each worker owns one dict for its whole life: a process worker one per process, a thread worker
one per thread (a thread of the user's inside a process worker sees its process's dict). The
initializer can fill it, tasks update it, and ``worker_exit`` (run once when the worker retires
in an orderly way) hands what it wants of it back to the parent, where :class:`ExitResults`
keeps it for the facade's ``worker_exit_results()``.
"""

from __future__ import annotations

import threading
from typing import Any

from shoal._core._outcome import ENCODE, RAISED, TRANSPORT, Failure
from shoal._errors import TransportError

__all__ = [
    "ExitResults",
    "begin_process_worker",
    "begin_thread_worker",
    "check_worker_exit",
    "end_thread_worker",
    "worker_state",
]

_local = threading.local()
#: The process worker's state; None in a process that is not a shoal worker.
_process_state: dict[Any, Any] | None = None


def worker_state() -> dict[Any, Any]:
    """The dict private to the worker this runs in, for state that outlives a task.

    A process worker has one per process, a worker thread of ``ThreadPool`` or
    ``ThreadPoolExecutor`` one per thread. It starts empty when the worker starts (the
    initializer may fill it) and lives as long as the worker: a worker that is replaced (it
    crashed or was killed, ``maxtasksperchild``, the memory guard, ``task_timeout``) takes its
    state with it, and its replacement starts with an empty one. Read it in ``worker_exit`` to
    send results back to the parent (``worker_exit_results()``).

    Raises:
        RuntimeError: called outside a shoal worker (in the main process, say).
    """
    state = getattr(_local, "state", None)
    if state is not None:
        return state  # type: ignore[no-any-return]
    if _process_state is not None:
        return _process_state
    raise RuntimeError(
        "shoal.worker_state() was called outside a shoal worker: it is the state of the "
        "worker that runs the current task (a Pool, ThreadPool or executor task, its "
        "initializer or its worker_exit). To run the same code serially, keep the state in "
        "a dict of your own and pass it in."
    )


def begin_process_worker() -> None:
    """A process worker starts: a fresh, empty state (a forked worker must not see the state
    of the process it was forked from)."""
    global _process_state
    _process_state = {}
    _local.state = None


def begin_thread_worker() -> None:
    _local.state = {}


def end_thread_worker() -> None:
    # The thread's state goes with it (a thread object may outlive its run).
    _local.state = None


def check_worker_exit(worker_exit: Any) -> None:
    if worker_exit is not None and not callable(worker_exit):
        raise TypeError(
            f"worker_exit must be a callable or None, not {type(worker_exit).__name__} "
            "(shoal: a function of no arguments, run once in each worker as it retires; it "
            "reads shoal.worker_state())"
        )


class ExitResults:
    """What ``worker_exit`` gave in each worker that retired, in the order they retired.

    Written by the backend (its manager thread, or the retiring worker thread), read by the
    facade from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: ``[ok, value or Failure, worker name, exception shown (made once)]``
        self._entries: list[list[Any]] = []

    def add(self, ok: bool, value: Any, worker: str) -> None:
        with self._lock:
            self._entries.append([ok, value, worker, None])

    def values(self, remote_tb: type[Exception] | None) -> list[Any]:
        """The values, in the order the workers retired.

        Raises:
            the first ``worker_exit`` failure: its own exception (a process worker's traceback
            as ``__cause__``, with ``remote_tb``), a note naming the worker.
        """
        with self._lock:
            entries = list(self._entries)
        failed = [e for e in entries if not e[0]]
        if failed:
            first = failed[0]
            if first[3] is None:
                first[3] = _exception(first[1], first[2], remote_tb, len(failed), len(entries))
            raise first[3]
        return [e[1] for e in entries]


def _exception(
    failure: Failure, worker: str, remote_tb: type[Exception] | None, failed: int, total: int
) -> BaseException:
    exc = failure.exc
    assert exc is not None
    if failure.kind == TRANSPORT:
        err: BaseException = TransportError(
            f"the worker_exit result of {worker} could not be unpickled here: {exc!r}"
        )
        err.__cause__ = exc
        exc = err
    elif remote_tb is not None and failure.tb is not None:
        exc.__cause__ = remote_tb(failure.tb)
    if failure.kind == ENCODE:
        what = f"returned {failure.detail}, which could not be pickled"
    elif failure.kind == RAISED:
        what = "raised"
    else:
        what = "failed"
    note = f"shoal: worker_exit {what} in {worker}"
    if failed > 1:
        note += f" (and in {failed - 1} more of the {total} workers that retired)"
    try:
        exc.add_note(note)
    except Exception:  # noqa: BLE001 - an exception class may forbid attributes
        pass
    return exc
