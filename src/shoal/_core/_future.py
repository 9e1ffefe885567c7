"""shoal's Future: a real ``concurrent.futures.Future`` that is also awaitable and can be
cancelled while it runs (``cancel(force=True)``)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Generator
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from typing import Any

from shoal._core._callbacks import CallbackRunner, in_internal_thread

__all__ = ["Future"]


class Future(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` that works with ``await`` and ``asyncio.wrap_future``.

    Done-callbacks triggered on one of shoal's own threads run on the pool's callback thread, so a
    callback that waits on the pool cannot block it.
    """

    _runner: CallbackRunner | None = None
    #: Asks the backend to stop the worker running this future's task.
    _force_cancel: Callable[[], object] | None = None
    #: Called when Ctrl-C lands in ``result()``/``exception()``.
    _on_interrupt: Callable[[], object] | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio  # here, not at import: loading asyncio costs every user of shoal ~15 ms

        return asyncio.wrap_future(self).__await__()

    def cancel(self, force: bool = False) -> bool:
        """Cancel the task. Without ``force`` this is the stdlib's cancel (only a task that has
        not started can be cancelled). With ``force=True`` a running task is stopped too: its
        worker process is stopped and replaced (a thread is abandoned), the future ends
        CANCELLED and its waiters wake."""
        if super().cancel():
            return True
        if not force or self._force_cancel is None:
            return False
        with self._condition:
            if self._state != RUNNING:
                return False
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._force_cancel()
        self._invoke_callbacks()
        return True

    def result(self, timeout: float | None = None) -> Any:
        try:
            return super().result(timeout)
        except KeyboardInterrupt:
            if self._on_interrupt is not None:
                self._on_interrupt()
            raise

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return super().exception(timeout)
        except KeyboardInterrupt:
            if self._on_interrupt is not None:
                self._on_interrupt()
            raise

    def _invoke_callbacks(self) -> None:
        runner = self._runner
        if runner is not None and self._done_callbacks and in_internal_thread():  # type: ignore[attr-defined]
            runner.post(super()._invoke_callbacks)  # type: ignore[misc]
        else:
            super()._invoke_callbacks()  # type: ignore[misc]
