"""The ``multiprocessing.Pool`` facade: :class:`Pool` and :class:`ThreadPool`.

Same constructor, methods, result objects and exceptions as ``multiprocessing.pool``; the work
runs on shoal's own backends (never on ``multiprocessing.pool.Pool``). Where shoal does better
than the stdlib (a worker that dies fails its task instead of hanging the pool), docs/compat.md
says so.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.pool as _mp_pool
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import Any

from shoal._core._backend import WorkerConfig, create_backend
from shoal._core._callbacks import CallbackRunner
from shoal._core._cpu import cpu_count
from shoal._core._jobs import ListJob, Presentation, Stream, StreamJob, ValueJob, Window
from shoal._core._lifecycle import track
from shoal._core._options import TaskOptions, check_options, parse_bytes
from shoal._core._schedule import chunk_sizes, start_feeder, submit_list
from shoal._core._state import check_worker_exit
from shoal._core._stats import Statistics
from shoal._core._task import CALL, ONE, STAR, Chunk
from shoal._errors import PoolBroken, ThreadPoolBroken
from shoal._observing import attach_trace, make_progress

__all__ = ["ApplyResult", "AsyncResult", "IMapIterator", "MapResult", "Pool", "ThreadPool"]

RUN = _mp_pool.RUN
CLOSE = _mp_pool.CLOSE
TERMINATE = _mp_pool.TERMINATE

#: How long ``Pool._pool`` waits for a just-launched worker's pid (it takes milliseconds).
_PID_WAIT = 10.0

_PROCESS_STYLE = Presentation(
    remote_tb=_mp_pool.RemoteTraceback,  # type: ignore[attr-defined]  # not in typeshed
    pool_style=True,
    timeout_error=multiprocessing.TimeoutError,
    broken_error=PoolBroken,
)
_THREAD_STYLE = Presentation(
    remote_tb=None,
    pool_style=True,
    timeout_error=multiprocessing.TimeoutError,
    broken_error=ThreadPoolBroken,
)


class ApplyResult(ValueJob):
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    def __repr__(self) -> str:
        state = "ready" if self.ready() else "pending"
        return f"<shoal.AsyncResult task={self._task} {state}>"


AsyncResult = ApplyResult


class MapResult(ListJob):
    """The result of ``map_async``/``starmap_async``: a list, in input order."""

    def __repr__(self) -> str:
        state = "ready" if self.ready() else "pending"
        return f"<shoal.MapResult {state}>"


class IMapIterator(Stream):
    """The iterator ``imap``/``imap_unordered`` return; ``next(timeout)`` as in the stdlib."""


def _check_chunksize(chunksize: int | None) -> None:
    if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
        raise ValueError(
            f"Chunksize must be 1+, not {chunksize!r} (shoal: pass a positive int, or None "
            "to size chunks automatically)"
        )


class Pool:
    """A process pool with the ``multiprocessing.Pool`` API.

    Args:
        processes: number of worker processes; None means one per CPU this process may use
            (:func:`shoal.cpu_count`, which honours affinity and cgroup quotas).
        initializer: called as ``initializer(*initargs)`` in each worker when it starts.
        initargs: arguments for ``initializer``.
        maxtasksperchild: replace a worker after it ran this many tasks (chunks); None: never.
        context: a ``multiprocessing`` context (or a start method name) to start workers with.

    Keyword-only (shoal's own):
        retries: run a task again, up to this many times, when its worker died (or it raised
            one of ``retry_on``); the last error keeps its type and lists earlier attempts in
            its notes. Per call too.
        retry_on: exception types that earn a retry.
        backoff: seconds before the first retry, doubled for each later one.
        task_timeout: seconds a task may run; past that it fails with ``shoal.TaskTimeout`` and
            its worker is stopped and replaced. Per call too.
        max_memory_per_worker: bytes (or a size such as ``"2GB"``) a worker may grow past its
            size after the initializer; a worker that grew more is replaced after its task.
        trace: True (or a :class:`shoal.Timeline`) records every task's worker, start, end and
            outcome in ``pool.timeline``.
        worker_exit: a function of no arguments, run once in each worker when it retires in an
            orderly way (``close()`` then ``join()``, ``maxtasksperchild``, the memory guard);
            what it returns (typically from :func:`shoal.worker_state`) is collected by
            :meth:`worker_exit_results`. Not run under ``terminate()`` (so not when a ``with``
            block ends), nor in a worker that is killed or stopped.

    Map-like methods also take ``progress=True`` (or a bar's title, or a ProgressBar).

    Raises:
        ValueError: ``processes`` < 1, ``maxtasksperchild`` not a positive int, or a bad
            option value (the message says what is allowed).
        TypeError: ``initializer`` is not callable.
    """

    _backend_name = "process"
    _presentation = _PROCESS_STYLE

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: float = 0.0,
        task_timeout: float | None = None,
        max_memory_per_worker: int | str | None = None,
        trace: bool | Any = False,
        worker_exit: Callable[[], object] | None = None,
    ) -> None:
        self._state = RUN  # set first: __del__ reads it even if the constructor fails
        self._backend: Any = None
        if processes is None:
            processes = self._default_size()
        if not isinstance(processes, int) or isinstance(processes, bool):
            raise TypeError(
                f"processes must be an int or None, not {type(processes).__name__} "
                "(shoal: None means one per usable CPU)"
            )
        if processes < 1:
            raise ValueError(
                "Number of processes must be at least 1 (shoal: pass processes=None for one "
                "worker per usable CPU)"
            )
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int)
            or isinstance(maxtasksperchild, bool)
            or maxtasksperchild <= 0
        ):
            raise ValueError(
                "maxtasksperchild must be a positive int or None (shoal: got "
                f"{maxtasksperchild!r})"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        check_worker_exit(worker_exit)
        self._options = check_options(
            retries=retries, retry_on=retry_on, backoff=backoff, task_timeout=task_timeout
        )
        memory_limit = parse_bytes(max_memory_per_worker)
        if isinstance(context, str):
            context = multiprocessing.get_context(context)
        self._processes = processes
        self._ctx = context if context is not None else multiprocessing.get_context()
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._maxtasksperchild = maxtasksperchild
        self._jobs = itertools.count()
        self._runner = CallbackRunner(f"{type(self).__name__}-callbacks")
        self._feeders = 0
        self._windows: set[Window] = set()
        self._feeders_lock = threading.Condition()
        self._closed_backend = False
        config = WorkerConfig(
            max_workers=processes,
            initializer=initializer,
            initargs=self._initargs,
            max_tasks_per_child=maxtasksperchild,
            context=self._ctx if self._backend_name == "process" else None,
            start_all=True,
            init_logger="multiprocessing",
            name=self._worker_name(),
            worker_exit=worker_exit,
            extra={"max_memory_per_worker": memory_limit},
        )
        self._backend = create_backend(self._backend_name, config)
        self._timeline = attach_trace(self._backend, trace)
        self._backend.start()
        track(self._backend, drain=False)
        # A pool nobody holds any more is terminated, as the stdlib's finalizer does.
        self._finalizer = weakref.finalize(self, _terminate_backend, self._backend, self._runner)
        self._finalizer.atexit = False

    @staticmethod
    def _default_size() -> int:
        return cpu_count()

    def _worker_name(self) -> str:
        return "ShoalPool"

    # ---- stdlib-compatible views of the workers ------------------------------------------

    @property
    def _pool(self) -> list[Any]:
        """The live workers (handles with ``pid``, ``is_alive()``, ``join()``, ``exitcode``).

        As in the stdlib, every handle has its pid: a worker forked by the zygote learns it a
        moment after launch, so this waits for that (bounded; a worker that could not start
        has ended instead)."""
        if self._backend is None:
            return []
        handles = list(self._backend.workers())
        for handle in handles:
            wait_started = getattr(handle, "wait_started", None)
            if wait_started is not None:
                wait_started(_PID_WAIT)
        return handles

    def _repopulate_pool(self) -> None:
        """The stdlib's "start workers to replace those that exited". shoal's manager thread
        replaces a worker the moment it exits, so there is nothing to do; kept for code (and
        CPython's tests) that call it."""

    def __repr__(self) -> str:
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} state={self._state} "
            f"pool_size={self._processes}>"
        )

    def __reduce__(self) -> Any:
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    def __del__(self, _warn: Any = warnings.warn, RUN: str = RUN) -> None:
        if getattr(self, "_state", None) == RUN and getattr(self, "_backend", None) is not None:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def statistics(self) -> Statistics:
        """Tasks done/failed/retried, per-worker busy fraction, time in user code vs transport
        vs idle, and the slowest tasks."""
        return self._backend.statistics()  # type: ignore[no-any-return]

    @property
    def timeline(self) -> Any:
        """The Timeline recording this pool's tasks (``trace=``), or None."""
        return self._timeline

    def worker_exit_results(self) -> list[Any]:
        """What ``worker_exit`` returned in each worker that retired, in the order they
        retired: one entry per worker once ``close()`` and ``join()`` returned (a worker
        replaced under ``maxtasksperchild`` or by the memory guard adds its own). While the
        pool runs, those of the workers that retired so far. Nothing for workers that were
        killed, stopped or ended by ``terminate()``: their state is lost.

        Raises:
            the exception of the first ``worker_exit`` that failed (it raised, or its value
            could not be pickled), with the worker's traceback as ``__cause__`` and a note
            naming the worker.
        """
        return self._backend.exit_results.values(self._presentation.remote_tb)  # type: ignore[no-any-return]

    # ---- submitting ----------------------------------------------------------------------

    def _opts(self, retries: int | None, task_timeout: float | None) -> TaskOptions:
        """The pool's options with this call's overrides."""
        base = self._options
        if retries is None and task_timeout is None:
            return base
        return check_options(
            retries=base.retries if retries is None else retries,
            retry_on=base.retry_on,
            backoff=base.backoff,
            task_timeout=base.timeout if task_timeout is None else task_timeout,
        )

    def _interrupted(self) -> None:
        """Ctrl-C in a wait: cancel what is queued, stop what runs; the pool stays usable."""
        self._backend.interrupt()

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _submit(self, chunk: Chunk) -> None:
        broken = self._backend.broken
        if broken is not None:
            raise self._presentation.broken_error(broken)
        self._backend.submit(chunk)

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
    ) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and wait for its result."""
        return self.apply_async(
            func, args, kwds, retries=retries, task_timeout=task_timeout
        ).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
    ) -> ApplyResult:
        """Start ``func(*args, **kwds)`` in a worker and return at once with an AsyncResult."""
        self._check_running()
        opts = self._opts(retries, task_timeout)
        task = next(self._jobs)
        result = ApplyResult(task, self._presentation, self._runner, callback, error_callback)
        result.on_interrupt = self._interrupted
        chunk = Chunk(func, CALL, [(tuple(args), dict(kwds or {}))], [task], result, opts, task)
        try:
            self._submit(chunk)
        except Exception as exc:  # noqa: BLE001 - unpicklable arguments: an already-failed result
            result._complete(False, exc)
        return result

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: int | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        opts: TaskOptions,
        progress: Any = False,
    ) -> MapResult:
        self._check_running()
        _check_chunksize(chunksize)
        items = iterable if isinstance(iterable, list) else list(iterable)
        sizes: int | list[int]
        if chunksize is None:
            estimate = getattr(self._backend, "item_time", None)
            sizes = chunk_sizes(
                len(items), self._processes, estimate(func) if estimate is not None else None
            )
        else:
            sizes = chunksize
        result = MapResult(len(items), self._presentation, self._runner, callback, error_callback)
        result.on_interrupt = self._interrupted
        result.progress = make_progress(progress, len(items), getattr(func, "__name__", "map"))
        job = next(self._jobs)
        try:
            submit_list(
                self._submit, func, mode, items, sizes, result, opts, job,
                many=getattr(self._backend, "submit_many", None),
            )
        except Exception as exc:  # noqa: BLE001 - an item cannot be pickled
            result.fail_rest(exc)
        return result

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> list[Any]:
        """``[func(x) for x in iterable]``, computed in the workers, in order."""
        opts = self._opts(retries, task_timeout)
        return self._map_async(func, iterable, ONE, chunksize, None, None, opts, progress).get()  # type: ignore[no-any-return]

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> MapResult:
        """Like ``map`` but returns a MapResult at once."""
        opts = self._opts(retries, task_timeout)
        return self._map_async(
            func, iterable, ONE, chunksize, callback, error_callback, opts, progress
        )

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> list[Any]:
        """``[func(*args) for args in iterable]``, computed in the workers, in order."""
        opts = self._opts(retries, task_timeout)
        return self._map_async(func, iterable, STAR, chunksize, None, None, opts, progress).get()  # type: ignore[no-any-return]

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> MapResult:
        """Like ``starmap`` but returns a MapResult at once."""
        opts = self._opts(retries, task_timeout)
        return self._map_async(
            func, iterable, STAR, chunksize, callback, error_callback, opts, progress
        )

    def _imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
        opts: TaskOptions,
        progress: Any = False,
    ) -> IMapIterator:
        self._check_running()
        _check_chunksize(chunksize)
        # Read ahead at most this many items of what was consumed (bounded memory over an
        # endless or huge input); close() lifts the bound for iterators still held.
        window = Window(max(64, 4 * self._processes) * chunksize)
        job = StreamJob(ordered, self._presentation, window)
        job.on_interrupt = self._interrupted
        total = len(iterable) if isinstance(iterable, Sized) else None
        job.progress = make_progress(progress, total, getattr(func, "__name__", "imap"))
        result = IMapIterator(job)
        with self._feeders_lock:
            self._feeders += 1
            self._windows.add(window)
        start_feeder(
            self._submit, func, ONE, iterable, chunksize, job,
            lambda: self._feeder_done(window),
            f"{type(self).__name__}-feeder", opts, next(self._jobs),
        )
        return result

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> IMapIterator:
        """An iterator of ``func(x)`` in input order. The input is read in the background, only
        as far ahead of the results consumed as a bounded window allows."""
        opts = self._opts(retries, task_timeout)
        return self._imap(func, iterable, chunksize, True, opts, progress)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        retries: int | None = None,
        task_timeout: float | None = None,
        progress: bool | str | Any = False,
    ) -> IMapIterator:
        """An iterator of ``func(x)`` in the order they finish."""
        opts = self._opts(retries, task_timeout)
        return self._imap(func, iterable, chunksize, False, opts, progress)

    def _feeder_done(self, window: Window) -> None:
        with self._feeders_lock:
            self._feeders -= 1
            self._windows.discard(window)
            self._feeders_lock.notify_all()
            last = self._feeders == 0
        if last and self._state == CLOSE:
            self._close_backend()

    # ---- ending --------------------------------------------------------------------------

    def _close_backend(self) -> None:
        with self._feeders_lock:
            if self._closed_backend:
                return
            self._closed_backend = True
        self._backend.shutdown(wait=False, cancel_pending=False)

    def close(self) -> None:
        """Accept no more tasks; the workers exit once the queued ones are done."""
        if self._state == RUN:
            self._state = CLOSE
            with self._feeders_lock:
                idle = self._feeders == 0
                windows = list(self._windows)
            for window in windows:
                window.unbound()  # read the rest of inputs whose results are still wanted
            if idle:
                self._close_backend()

    def terminate(self) -> None:
        """Stop the workers now; unfinished tasks fail with CancelledError. Returns once the
        workers have exited, as the stdlib's does (so a ``with`` block's end leaves no worker
        behind); a worker that ignores SIGTERM gets SIGKILL after a grace period."""
        self._state = TERMINATE
        with self._feeders_lock:
            windows = list(self._windows)
        for window in windows:
            window.abandon()
        _terminate_backend(self._backend, self._runner)
        # From the manager thread (a pool ended from its own worker-event hook) this returns at
        # once; from a callback it is safe: the manager never waits on the callback thread.
        self._backend.join()

    def join(self) -> None:
        """Wait for the workers to exit, after ``close()`` or ``terminate()``."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError(f"In unknown state {self._state!r}")
        with self._feeders_lock:
            self._feeders_lock.wait_for(lambda: self._feeders == 0 or self._state == TERMINATE)
        self._backend.join()
        self._runner.stop(wait=True)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()


def _terminate_backend(backend: Any, runner: CallbackRunner) -> None:
    backend.terminate()
    runner.stop(wait=False)


class ThreadPool(Pool):
    """A pool of threads with the ``multiprocessing.pool.ThreadPool`` API."""

    _backend_name = "thread"
    _presentation = _THREAD_STYLE

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        *,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: float = 0.0,
        task_timeout: float | None = None,
        trace: bool | Any = False,
        worker_exit: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(
            processes,
            initializer,
            initargs,
            retries=retries,
            retry_on=retry_on,
            backoff=backoff,
            task_timeout=task_timeout,
            trace=trace,
            worker_exit=worker_exit,
        )

    @staticmethod
    def _default_size() -> int:
        return os.cpu_count() or 1

    def _worker_name(self) -> str:
        return "ShoalThreadPool"
