"""Result objects both facades and ``shoal.map`` build on: one value, a list, or a stream.

Each is a :class:`shoal._core._task.Sink`: a backend records item outcomes on its own thread
(``deliver`` never blocks); user callbacks run on the pool's callback thread, before the result
becomes ready, as ``multiprocessing.Pool`` does.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from shoal._core._callbacks import CallbackRunner, in_internal_thread
from shoal._core._outcome import BROKEN, CANCELLED, Failure

__all__ = ["ListJob", "Presentation", "Stream", "StreamJob", "ValueJob", "Window"]


class Window:
    """How far an ``imap`` feeder may read ahead of the consumer, in items.

    The feeder waits while ``read - consumed >= size``. Closing the pool lifts the bound
    (``unbound``), so code that closes and joins before iterating still gets every result; an
    abandoned iterator (``abandon``) stops the feeder, so ``join()`` does not read an endless
    input for ever.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._cond = threading.Condition(threading.Lock())
        self._read = 0
        self._consumed = 0
        self._unbounded = False
        self.abandoned = False

    def wait_for_room(self, n: int) -> bool:
        """Block until ``n`` more items may be read; False if the iterator was abandoned."""
        with self._cond:
            self._cond.wait_for(
                lambda: self.abandoned
                or self._unbounded
                or self._read - self._consumed < self.size
            )
            if self.abandoned:
                return False
            self._read += n
            return True

    @property
    def ahead(self) -> int:
        """Items read from the input whose results were not consumed yet."""
        return self._read - self._consumed

    def consumed(self) -> None:
        with self._cond:
            self._consumed += 1
            if self._read - self._consumed < self.size:
                self._cond.notify()

    def unbound(self) -> None:
        with self._cond:
            self._unbounded = True
            self._cond.notify_all()

    def abandon(self) -> None:
        with self._cond:
            self.abandoned = True
            self._cond.notify_all()


@dataclass(frozen=True)
class Presentation:
    """How a facade shows failures: its stdlib's classes."""

    #: Class for a worker's traceback as ``__cause__`` (None: the thread backend).
    remote_tb: type[Exception] | None
    #: multiprocessing.Pool style: an unpicklable result is a MaybeEncodingError.
    pool_style: bool
    #: Raised when a wait runs out.
    timeout_error: type[Exception]
    #: Raised for every task once the initializer failed.
    broken_error: type[Exception]

    def exception(self, failure: Failure, task: object) -> BaseException:
        if failure.kind == CANCELLED:
            err = CancelledError(str(failure.exc))
            return err
        if failure.kind == BROKEN:
            return self.broken_error(str(failure.exc))
        return failure.to_exception(
            remote_tb=self.remote_tb, pool_style=self.pool_style, task=task
        )


class _Job:
    """Shared waiting logic: an event set once the job is complete."""

    def __init__(
        self,
        presentation: Presentation,
        runner: CallbackRunner | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        self._presentation = presentation
        self._runner = runner
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._success: bool | None = None
        self._value: Any = None
        #: Called when Ctrl-C lands in a wait on this job (the pool cancels and stops tasks).
        self.on_interrupt: Callable[[], object] | None = None
        #: A progress bar (``update(ok)``, ``close()``), for map-like calls.
        self.progress: Any = None
        # A job with a callback can be waited on from the callback thread itself (a callback
        # that waits on another result): that wait runs the job's callback, if it is pending,
        # rather than wait for the thread it blocks.
        self._pending: tuple[Callable[[Any], object], Any] | None = None
        self._cv = (
            threading.Condition(threading.Lock())
            if callback is not None or error_callback is not None
            else None
        )

    def claim(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def wait(self, timeout: float | None = None) -> None:
        try:
            if (
                self._cv is not None
                and self._runner is not None
                and self._runner.on_own_thread()
            ):
                self._wait_on_callback_thread(timeout)
            else:
                self._event.wait(timeout)
        except KeyboardInterrupt:
            if self.on_interrupt is not None:
                self.on_interrupt()
            raise

    def get(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise self._presentation.timeout_error
        if self._success:
            return self._value
        raise self._value

    def _wait_on_callback_thread(self, timeout: float | None) -> None:
        import time

        assert self._cv is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._event.is_set():
                if self._pending is not None:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._cv.wait(left)
            else:
                return
        self._run_pending()

    def _complete(self, success: bool, value: Any) -> None:
        """Record the final outcome; callbacks (if any) run first, on the callback thread."""
        self._success = success
        self._value = value
        callback = self._callback if success else self._error_callback
        if callback is None:
            self._finish()
        elif self._runner is not None and in_internal_thread():
            assert self._cv is not None
            with self._cv:
                self._pending = (callback, value)
                self._cv.notify_all()
            self._runner.post(self._run_pending)
        else:
            self._run_callback(callback, value)

    def _run_pending(self) -> None:
        """Run the pending callback once, whichever runs first: the callback thread's queue,
        or a wait on that same thread."""
        assert self._cv is not None
        with self._cv:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._run_callback(*pending)

    def _run_callback(self, callback: Callable[[Any], object], value: Any) -> None:
        try:
            callback(value)
        finally:
            self._finish()

    def _finish(self) -> None:
        self._callback = self._error_callback = None
        if self._cv is not None:
            with self._cv:
                self._event.set()
                self._cv.notify_all()
        else:
            self._event.set()


class ValueJob(_Job):
    """One task's result (``apply_async``)."""

    def __init__(self, task: int, presentation: Presentation, runner: CallbackRunner | None,
                 callback: Callable[[Any], object] | None = None,
                 error_callback: Callable[[BaseException], object] | None = None) -> None:
        super().__init__(presentation, runner, callback, error_callback)
        self._task = task

    def deliver(self, index: int, ok: bool, value: Any) -> None:
        if ok:
            self._complete(True, value)
        else:
            self._complete(False, self._presentation.exception(value, self._task))


class ListJob(_Job):
    """Many items' results in order (``map_async``); the first failure completes it."""

    def __init__(self, length: int, presentation: Presentation, runner: CallbackRunner | None,
                 callback: Callable[[Any], object] | None = None,
                 error_callback: Callable[[BaseException], object] | None = None) -> None:
        super().__init__(presentation, runner, callback, error_callback)
        self._values: list[Any] = [None] * length
        self._left = length
        self._failed = False
        self._lock = threading.Lock()
        if length == 0:
            self._complete(True, self._values)

    def deliver(self, index: int, ok: bool, value: Any) -> None:
        progress = self.progress
        if progress is not None:
            progress.update(ok)
        with self._lock:
            self._left -= 1
            if progress is not None and self._left == 0:
                progress.close()
            if self._failed:
                return
            if ok:
                self._values[index] = value
                if self._left == 0:
                    values, self._values = self._values, []
                    self._complete(True, values)
                return
            self._failed = True
            self._values = []
        self._complete(False, self._presentation.exception(value, index))

    def deliver_many(self, indices: Any, values: list[Any]) -> None:
        """Record a chunk whose items all succeeded, in one step."""
        progress = self.progress
        if progress is not None:
            for _ in values:
                progress.update(True)
        with self._lock:
            self._left -= len(values)
            if progress is not None and self._left == 0:
                progress.close()
            if self._failed:
                return
            if isinstance(indices, range) and indices.step == 1:
                self._values[indices.start : indices.stop] = values
            else:
                for i, v in zip(indices, values, strict=True):
                    self._values[i] = v
            if self._left != 0:
                return
            result, self._values = self._values, []
        self._complete(True, result)

    def fail_rest(self, exc: BaseException) -> None:
        """The input could not be sent (pickling): fail now, whatever is still running."""
        with self._lock:
            if self._failed or self.ready():
                return
            self._failed = True
            self._values = []
        self._complete(False, exc)


class StreamJob:
    """Results as an iterator, in input order or as they finish (``imap``, ``imap_unordered``).

    The length is known only once the input is exhausted (``set_length``)."""

    #: Its input is read as results are consumed: a large buffer in one chunk's items is held
    #: only while that chunk is, not for the whole stream (Sink).
    streams = True

    def __init__(
        self, ordered: bool, presentation: Presentation, window: Window | None = None
    ) -> None:
        self._ordered = ordered
        self._presentation = presentation
        #: Bounds how far the input is read ahead of what was consumed (see Window).
        self.window = window
        #: Called when Ctrl-C lands in a wait on this iterator.
        self.on_interrupt: Callable[[], object] | None = None
        #: A progress bar (``update(ok)``, ``close()``).
        self.progress: Any = None
        self._delivered = 0
        self._cond = threading.Condition(threading.Lock())
        self._items: dict[int, tuple[bool, Any]] = {}
        self._arrived: deque[tuple[bool, Any, int]] = deque()
        self._next = 0
        self._length: int | None = None
        self.consumed = 0

    def claim(self) -> bool:
        return True

    def deliver(self, index: int, ok: bool, value: Any) -> None:
        if self.progress is not None:
            self.progress.update(ok)
        with self._cond:
            self._delivered += 1
            self._maybe_close_progress()
            if self._ordered:
                self._items[index] = (ok, value)
                if index == self._next:
                    self._cond.notify()
            else:
                self._arrived.append((ok, value, index))
                self._cond.notify()

    def set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._maybe_close_progress()
            self._cond.notify_all()

    def _maybe_close_progress(self) -> None:
        # Called with the lock held.
        if (
            self.progress is not None
            and self._length is not None
            and self._delivered >= self._length
        ):
            self.progress.close()
            self.progress = None

    def __iter__(self) -> StreamJob:
        return self

    def _take(self) -> tuple[bool, Any, int] | None:
        if self._ordered:
            got = self._items.pop(self._next, None)
            if got is None:
                return None
            self._next += 1
            return (got[0], got[1], self._next - 1)
        if self._arrived:
            self._next += 1
            return self._arrived.popleft()
        return None

    def next(self, timeout: float | None = None) -> Any:
        try:
            return self._next_item(timeout)
        except KeyboardInterrupt:
            if self.on_interrupt is not None:
                self.on_interrupt()
            raise

    def _next_item(self, timeout: float | None) -> Any:
        with self._cond:
            got = self._take()
            if got is None:
                if self._length is not None and self._next >= self._length:
                    raise StopIteration
                self._cond.wait_for(
                    lambda: (self._next in self._items if self._ordered else bool(self._arrived))
                    or (self._length is not None and self._next >= self._length),
                    timeout,
                )
                got = self._take()
                if got is None:
                    if self._length is not None and self._next >= self._length:
                        raise StopIteration from None
                    raise self._presentation.timeout_error from None
            self.consumed += 1
        if self.window is not None:
            self.window.consumed()
        ok, value, index = got
        if ok:
            return value
        raise self._presentation.exception(value, index)

    __next__ = next


class Stream:
    """The iterator a caller holds over a :class:`StreamJob`.

    Kept apart from the job on purpose: chunks in flight hold the job, only the caller holds
    this. When the caller drops it, its window is abandoned at once and the feeder stops reading
    (an endless input is not read for ever by ``join()``)."""

    def __init__(self, job: StreamJob) -> None:
        self._job = job
        if job.window is not None:
            weakref.finalize(self, job.window.abandon)

    @property
    def window(self) -> Window | None:
        return self._job.window

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        return self._job.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result; ``timeout`` as in the stdlib's ``IMapIterator.next``."""
        return self._job.next(timeout)
