"""A thread that runs user callbacks, so a callback that waits on its pool cannot block the very
result it waits for (results are recorded on the backend's thread; callbacks run here)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

__all__ = ["CallbackRunner", "in_internal_thread", "mark_internal_thread"]

_local = threading.local()


def mark_internal_thread() -> None:
    """Mark the current thread as one of shoal's own (its callbacks are handed off)."""
    _local.internal = True


def in_internal_thread() -> bool:
    return getattr(_local, "internal", False)


class CallbackRunner:
    """Runs posted calls in order on one daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._queue.put((fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                with self._lock:
                    if self._queue.empty():
                        # Ended; a later post() starts a new thread.
                        self._thread = None
                        return
                continue
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a user's callback must not end this thread
                import sys
                import traceback

                print(f"shoal: exception in callback {fn!r}:", file=sys.stderr)
                traceback.print_exc()
            del job, fn, args

    def on_own_thread(self) -> bool:
        """True when called from the thread that runs the callbacks."""
        return self._thread is threading.current_thread()

    def stop(self, wait: bool = True) -> None:
        """Run what was posted so far, then end the thread (a later post starts a new one)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._queue.put(None)
        if wait and thread is not threading.current_thread():
            thread.join()
