"""The ``concurrent.futures`` facade: :class:`ProcessPoolExecutor` and :class:`ThreadPoolExecutor`.

Same constructors, ``submit``/``map``/``shutdown`` and exceptions as the stdlib; futures are
:class:`shoal.Future` (a ``concurrent.futures.Future`` that is also awaitable). Workers start on
demand, as the stdlib's do.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import _RemoteTraceback
from typing import Any

from shoal._core._backend import WorkerConfig, create_backend
from shoal._core._callbacks import CallbackRunner
from shoal._core._cpu import cpu_count
from shoal._core._future import Future
from shoal._core._jobs import Presentation
from shoal._core._lifecycle import exiting, track
from shoal._core._options import DEFAULT, TaskOptions, check_options, parse_bytes
from shoal._core._outcome import CANCELLED
from shoal._core._state import check_worker_exit
from shoal._core._stats import Statistics
from shoal._core._task import CALL, STAR, Chunk
from shoal._errors import PoolBroken, ThreadPoolBroken
from shoal._observing import attach_trace, make_progress

__all__ = ["Executor", "ProcessPoolExecutor", "ThreadPoolExecutor"]

#: How long ``_processes`` waits for a worker's pid (a worker that cannot start ends sooner).
_PID_WAIT = 10.0

_PROCESS_STYLE = Presentation(
    remote_tb=_RemoteTraceback,
    pool_style=False,
    timeout_error=TimeoutError,
    broken_error=PoolBroken,
)
_THREAD_STYLE = Presentation(
    remote_tb=None,
    pool_style=False,
    timeout_error=TimeoutError,
    broken_error=ThreadPoolBroken,
)


class _MapCall:
    """What a map's batches share: one call, whose large buffers are sent once (Sink.call).
    It lives as long as the map's futures do."""

    __slots__ = ("__weakref__", "streams")

    def __init__(self, streams: bool) -> None:
        #: Batches are submitted as results are consumed (``buffersize``).
        self.streams = streams


class _FutureSink:
    """Connects one future to the backend: a chunk of one call, or of a ``map`` batch (whose
    future's result is the batch's list of results; the first failure fails it)."""

    __slots__ = (
        "call", "claimed", "future", "left", "presentation", "progress", "task", "values",
    )

    def __init__(
        self, future: Future, presentation: Presentation, task: int, batch: int | None
    ) -> None:
        self.future = future
        self.presentation = presentation
        self.task = task
        self.values: list[Any] | None = [None] * batch if batch is not None else None
        self.left = batch or 1
        self.claimed = False
        #: A progress bar shared by a map's batches (``update(ok)`` per item).
        self.progress: Any = None
        #: Shared by a map's batches: one call, whose large buffers are sent once (Sink.call).
        self.call: _MapCall | None = None

    def claim(self) -> bool:
        # A chunk can be claimed again: re-queued after its worker died, or retried.
        if self.claimed:
            return not self.future.cancelled()
        self.claimed = True
        return self.future.set_running_or_notify_cancel()

    def deliver(self, index: int, ok: bool, value: Any) -> None:
        if self.progress is not None:
            self.progress.update(ok)
        future = self.future
        if future.done():
            return
        try:
            if not ok:
                if value.kind == CANCELLED and not future.running():
                    # Notified too, so wait() and as_completed() count it as done: the stdlib's
                    # shutdown(cancel_futures=True) only cancels, and a wait() for such a future
                    # never returns.
                    future.cancel()
                    future.set_running_or_notify_cancel()
                    return
                future.set_exception(self.presentation.exception(value, self.task + index))
            elif self.values is None:
                future.set_result(value)
            else:
                self.values[index] = value
                self.left -= 1
                if self.left == 0:
                    values, self.values = self.values, None
                    future.set_result(values)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by its owner meanwhile
        if future.done():
            # A done future cannot be force-cancelled; dropping the hook breaks the cycle
            # future -> hook -> sink -> future, so a result is freed once its future is.
            future._force_cancel = None

    def deliver_many(self, indices: Any, values: list[Any]) -> None:
        """A chunk whose items all succeeded, in one step (a whole ``map`` batch: one
        ``set_result`` rather than one call per item)."""
        if self.progress is not None:
            for _ in values:
                self.progress.update(True)
        future = self.future
        if future.done():
            return
        try:
            if self.values is None:
                future.set_result(values[0])
            elif self.left == len(self.values) and len(values) == self.left:
                self.values = None
                future.set_result(values)
            else:
                batch = self.values
                for i, v in zip(indices, values, strict=True):
                    batch[i] = v
                self.left -= len(values)
                if self.left == 0:
                    self.values = None
                    future.set_result(batch)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by its owner meanwhile
        future._force_cancel = None


class Executor(concurrent.futures.Executor):
    """What both executors share: submit, map, shutdown over a shoal backend."""

    _backend_name = "process"
    _presentation = _PROCESS_STYLE
    _broken_error: type[Exception] = PoolBroken

    _options: TaskOptions = DEFAULT
    _start_all_first = False
    #: The progress bar of the map being submitted (handed to its sinks), or None.
    _progress: Any = None

    def _setup(self, config: WorkerConfig, trace: Any = False) -> None:
        self._shutdown_lock = threading.Lock()
        self._shutdown_thread = False
        self._tasks = itertools.count()
        self._runner = CallbackRunner(f"{type(self).__name__}-callbacks")
        self._backend: Any = create_backend(self._backend_name, config)
        self._timeline = attach_trace(self._backend, trace)
        track(self._backend, drain=True)
        # An executor nobody holds any more finishes its queued work, then its workers exit.
        self._finalizer = weakref.finalize(self, _shutdown_backend, self._backend)
        self._finalizer.atexit = False

    @property
    def _broken(self) -> str | bool:
        return self._backend.broken or False

    def statistics(self) -> Statistics:
        """Tasks done/failed/retried, per-worker busy fraction, time in user code vs transport
        vs idle, and the slowest tasks."""
        return self._backend.statistics()  # type: ignore[no-any-return]

    @property
    def timeline(self) -> Any:
        """The Timeline recording this executor's tasks (``trace=``), or None."""
        return self._timeline

    def worker_exit_results(self) -> list[Any]:
        """What ``worker_exit`` returned in each worker that retired, in the order they
        retired: one entry per worker that started once ``shutdown(wait=True)`` returned (the
        end of a ``with`` block); workers start on demand, so there may be fewer than
        ``max_workers``. While the executor runs, those of the workers that retired so far
        (``max_tasks_per_child``, the memory guard). Nothing for workers that were killed or
        stopped: their state is lost.

        Raises:
            the exception of the first ``worker_exit`` that failed (it raised, or its value
            could not be pickled), with the worker's traceback as ``__cause__`` and a note
            naming the worker.
        """
        return self._backend.exit_results.values(self._presentation.remote_tb)  # type: ignore[no-any-return]

    def _new_future(self, sink_holder: list[Any]) -> Future:
        future = Future()
        future._runner = self._runner
        # The backend's, not ours: a future must not keep its executor alive (an executor
        # nobody holds shuts down, even while its futures are still held).
        backend = self._backend
        future._on_interrupt = backend.interrupt
        future._force_cancel = lambda: backend.cancel_running(sink_holder[0])
        return future

    def _interrupted(self) -> None:
        """Ctrl-C in a wait: cancel what is queued, stop what runs; the executor stays usable."""
        self._backend.interrupt()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool | None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C inside the with block: do not wait for queued work (the stdlib would).
            self._interrupted()
            self.shutdown(wait=True, cancel_futures=True)
            return None
        self.shutdown(wait=True)
        return None

    def _check_open(self) -> None:
        """Called, with the shutdown lock held, before any work is submitted."""
        broken = self._backend.broken
        if broken is not None:
            raise self._broken_error(broken)
        if self._shutdown_thread:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if self._start_all_first:
            # The stdlib's process executor under fork starts every worker at the first
            # submission (it cannot fork later, once its threads run); shoal's zygote could,
            # but code and tests count the workers.
            self._start_all_first = False
            self._backend.start(wait=False)  # the process backend's: only it is started here

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)``; returns a Future. Arguments that cannot be pickled
        give an already-failed future."""
        with self._shutdown_lock:
            self._check_open()
            holder: list[Any] = []
            future = self._new_future(holder)
            task = next(self._tasks)
            sink = _FutureSink(future, self._presentation, task, None)
            holder.append(sink)
            chunk = Chunk(fn, CALL, [(args, kwargs)], [0], sink, self._options)
            _send(self._backend, chunk, future)
            return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | str | Any = False,
    ) -> Iterator[Any]:
        """Like ``map(fn, *iterables)``, run in the workers.

        The input is read at once, as the stdlib does, unless ``buffersize`` (CPython 3.14's
        name) bounds how many batches are submitted ahead of the results consumed.
        ``chunksize`` batches items into one message per batch.
        """
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError(
                f"buffersize must be None or > 0, not {buffersize!r} (shoal: None reads the "
                "whole input at once, as the stdlib does)"
            )
        end_time = None if timeout is None else timeout + time.monotonic()
        try:
            total: int | None = min(len(it) for it in iterables)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            total = None
        self._progress = make_progress(progress, total, getattr(fn, "__name__", "map"))
        bar = self._progress
        batches = _batches(zip(*iterables, strict=False), chunksize)
        # Each batch's first position in the input: notes name an item by its position in this
        # map, as Pool.map does (a per-executor counter plus the offset in a batch would give two
        # items the same number).
        starts = itertools.count(0, chunksize)
        call = _MapCall(buffersize is not None)
        with self._shutdown_lock:
            self._check_open()
            if buffersize is None:
                futures = [
                    self._submit_batch(fn, batch, chunksize, next(starts), call)
                    for batch in batches
                ]
            else:
                futures = [
                    self._submit_batch(fn, batch, chunksize, next(starts), call)
                    for batch in itertools.islice(batches, buffersize)
                ]
        self._progress = None
        more = (
            None
            if buffersize is None
            else (lambda: self._next_batch(fn, batches, chunksize, starts, bar, call))
        )
        return _iterate(futures, end_time, single=chunksize == 1, more=more, progress=bar)

    def _next_batch(
        self,
        fn: Callable[..., Any],
        batches: Iterator[list[Any]],
        chunksize: int,
        starts: Iterator[int],
        bar: Any = None,
        call: _MapCall | None = None,
    ) -> Future | None:
        batch = next(batches, None)
        if batch is None:
            return None
        with self._shutdown_lock:
            self._check_open()
            self._progress = bar
            try:
                return self._submit_batch(fn, batch, chunksize, next(starts), call)
            finally:
                self._progress = None

    def _submit_batch(
        self,
        fn: Callable[..., Any],
        batch: list[Any],
        chunksize: int,
        start: int,
        call: _MapCall | None = None,
    ) -> Future:
        holder: list[Any] = []
        future = self._new_future(holder)
        task = start
        sink = _FutureSink(future, self._presentation, task, None if chunksize == 1 else len(batch))
        holder.append(sink)
        sink.progress = self._progress
        sink.call = call
        chunk = Chunk(fn, STAR, batch, range(len(batch)), sink, self._options, task)
        _send(self._backend, chunk, future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``cancel_futures`` drop what has not started. With ``wait``,
        return once every worker has exited."""
        with self._shutdown_lock:
            self._shutdown_thread = True
        if cancel_futures:
            self._settle()
        self._backend.shutdown(wait=False, cancel_pending=cancel_futures)
        if wait:
            self._backend.join()
            self._runner.stop(wait=True)


    def _settle(self) -> None:
        """Let the backend act on everything submitted so far (the process backend hands work
        to workers on its own thread; the thread backend's workers take it themselves)."""


def _send(backend: Any, chunk: Chunk, future: Future) -> None:
    """Hand a chunk to the backend; if it cannot be sent (pickling), fail its future with why."""
    try:
        backend.submit(chunk)
    except Exception as exc:  # noqa: BLE001
        # The error's traceback keeps its frames, and they hold the chunk (so the future, which
        # holds the error): without this, the arguments (a lock, a big array) would live on
        # until the garbage collector finds the cycle.
        traceback.clear_frames(exc.__traceback__)
        del chunk
        future.set_running_or_notify_cancel()
        future.set_exception(exc)
        del future


def _batches(args: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[Any]]:
    while True:
        batch = list(itertools.islice(args, size))
        if not batch:
            return
        yield batch


def _iterate(
    futures: list[Future],
    end_time: float | None,
    single: bool,
    more: Callable[[], Future | None] | None = None,
    progress: Any = None,
) -> Iterator[Any]:
    # A generator separate from map() so that map() itself submits eagerly, and cancels what is
    # left when the caller stops iterating (or a wait times out). With ``more`` (buffersize),
    # one batch is submitted for each batch consumed. No local names a future or a result
    # while suspended at a yield: a result the caller dropped must be freed (CPython's
    # test_free_reference, bpo-14406).
    futures.reverse()
    try:
        while futures:
            if more is not None:
                extra = more()
                if extra is not None:
                    futures.insert(0, extra)
            if single:
                yield _result_or_cancel(futures.pop(), end_time)
            else:
                batch = _result_or_cancel(futures.pop(), end_time)
                batch.reverse()
                while batch:
                    yield batch.pop()
    finally:
        for future in futures:
            future.cancel()
        if progress is not None:
            progress.close()


def _result_or_cancel(future: Future, end_time: float | None) -> Any:
    try:
        if end_time is None:
            return future.result()
        return future.result(end_time - time.monotonic())
    finally:
        future.cancel()
        del future  # a raised exception's traceback would keep it (and its result) alive


def _shutdown_backend(backend: Any) -> None:
    backend.shutdown(wait=False, cancel_pending=False)


class ProcessPoolExecutor(Executor):
    """A ``concurrent.futures.ProcessPoolExecutor`` on shoal's process backend.

    Args:
        max_workers: the most worker processes; None means one per usable CPU.
        mp_context: a ``multiprocessing`` context; None means the platform's default, or spawn
            when ``max_tasks_per_child`` is given (as the stdlib does).
        initializer: called as ``initializer(*initargs)`` in each worker when it starts.
        initargs: arguments for ``initializer``.
        max_tasks_per_child: replace a worker after this many tasks.
        retries, retry_on, backoff, task_timeout, max_memory_per_worker, trace, worker_exit:
            keyword-only, as on :class:`shoal.Pool` (a task past ``task_timeout`` fails with
            ``TaskTimeout``; its worker is stopped and replaced; ``worker_exit`` runs in each
            worker as it retires, ``shutdown(wait=True)`` included, and
            :meth:`worker_exit_results` collects what it returned). ``map`` also takes
            ``progress=True``.

    Raises:
        ValueError: ``max_workers`` <= 0, ``max_tasks_per_child`` <= 0, or
            ``max_tasks_per_child`` with the fork start method.
        TypeError: ``initializer`` not callable, ``max_tasks_per_child`` not an int.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: float = 0.0,
        task_timeout: float | None = None,
        max_memory_per_worker: int | str | None = None,
        trace: bool | Any = False,
        worker_exit: Callable[[], object] | None = None,
    ) -> None:
        self._options = check_options(
            retries=retries, retry_on=retry_on, backoff=backoff, task_timeout=task_timeout
        )
        memory_limit = parse_bytes(max_memory_per_worker)
        if max_workers is None:
            max_workers = cpu_count()
        elif max_workers <= 0:
            raise ValueError(
                "max_workers must be greater than 0 (shoal: None means one per usable CPU)"
            )
        if isinstance(mp_context, str):
            mp_context = multiprocessing.get_context(mp_context)
        if mp_context is None:
            mp_context = multiprocessing.get_context(
                "spawn" if max_tasks_per_child is not None else None
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        check_worker_exit(worker_exit)
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                raise ValueError(
                    "max_tasks_per_child is incompatible with the 'fork' multiprocessing start "
                    "method; supply a different mp_context."
                )
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._initializer = initializer
        self._initargs = initargs
        self._start_all_first = mp_context.get_start_method(allow_none=False) == "fork"
        self._setup(
            WorkerConfig(
                max_workers=max_workers,
                initializer=initializer,
                initargs=tuple(initargs),
                max_tasks_per_child=max_tasks_per_child,
                context=mp_context,
                start_all=False,
                first_early=True,
                init_logger="concurrent.futures",
                name="ShoalExecutor",
                worker_exit=worker_exit,
                extra={"max_memory_per_worker": memory_limit},
            ),
            trace,
        )

    def _settle(self) -> None:
        # What the stdlib has already handed to workers when shutdown(cancel_futures=True)
        # runs (its call queue: up to max_workers + 1 calls) is no longer "pending" there; here,
        # what the manager has handed to workers when it has caught up with every submit().
        self._backend.settle()

    # ---- stdlib-compatible views (code and CPython's tests read these) -------------------

    @property
    def _processes(self) -> dict[int, Any]:
        """The live workers by pid: handles with ``pid``, ``is_alive()``, ``join()``,
        ``terminate()``, ``exitcode``.

        The stdlib starts workers inside ``submit()``; shoal's manager thread starts them, so
        this first waits until it has acted on everything submitted so far, and for each
        worker's pid (a zygote reports it a moment after the fork)."""
        backend = self._backend
        backend.settle()
        handles = backend.workers()
        for handle in handles:
            handle.wait_started(_PID_WAIT)
        return {h.pid: h for h in handles if h.pid is not None}

    @property
    def _executor_manager_thread(self) -> threading.Thread:
        """The thread that runs the pool; it ends once the executor has shut down."""
        return self._backend.manager_thread  # type: ignore[no-any-return]

    @property
    def _call_queue(self) -> _CallQueue:
        """The stdlib's queue of calls for the workers; here, its ``join_thread()`` only."""
        return _CallQueue(self._backend)


class _CallQueue:
    """What ``ProcessPoolExecutor._call_queue`` offers in the stdlib that means something in
    shoal: ``join_thread()`` returns once every queued call has been handed to a worker and the
    executor has ended. It holds the backend only, so it keeps no executor alive."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def join_thread(self) -> None:
        self._backend.join()


class ThreadPoolExecutor(Executor):
    """A ``concurrent.futures.ThreadPoolExecutor`` on shoal's thread backend.

    Args:
        max_workers: the most threads; None means ``min(32, os.cpu_count() + 4)`` (the stdlib's).
        thread_name_prefix: names threads ``{prefix}_{n}``.
        initializer: called as ``initializer(*initargs)`` in each thread when it starts.
        initargs: arguments for ``initializer``.
        retries, retry_on, backoff, task_timeout, trace, worker_exit: keyword-only, as on
            :class:`shoal.ThreadPool` (``worker_exit`` runs in each thread as it retires at
            ``shutdown``; each thread has its own :func:`shoal.worker_state`).
    """

    _backend_name = "thread"
    _presentation = _THREAD_STYLE
    _broken_error = ThreadPoolBroken
    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: float = 0.0,
        task_timeout: float | None = None,
        trace: bool | Any = False,
        worker_exit: Callable[[], object] | None = None,
    ) -> None:
        self._options = check_options(
            retries=retries, retry_on=retry_on, backoff=backoff, task_timeout=task_timeout
        )
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError(
                "max_workers must be greater than 0 (shoal: None picks min(32, CPUs + 4))"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        check_worker_exit(worker_exit)
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{self._counter()}"
        self._initializer = initializer
        self._initargs = initargs
        self._setup(
            WorkerConfig(
                max_workers=max_workers,
                initializer=initializer,
                initargs=tuple(initargs),
                start_all=False,
                init_logger="concurrent.futures",
                name=self._thread_name_prefix,
                worker_exit=worker_exit,
            ),
            trace,
        )

    @property
    def _threads(self) -> set[threading.Thread]:
        return set(self._backend.threads())

