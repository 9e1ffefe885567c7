"""The thread backend: worker threads of this process, for I/O-bound work and ThreadPool.

Threads cannot be stopped from outside: a task that never returns keeps its thread. The backend
never waits on such a thread while holding anything the pool needs; ``terminate()`` drops the
queued chunks and lets running ones finish in the background.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from shoal._core._backend import WorkerConfig
from shoal._core._callbacks import mark_internal_thread
from shoal._core._outcome import BROKEN, CANCELLED, RAISED, Failure
from shoal._core._task import Chunk, run_items

__all__ = ["ThreadBackend"]


class ThreadBackend:
    """Runs chunks on a set of worker threads, started at once or on demand."""

    kind = "thread"

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._max = config.max_workers
        self._queue: deque[Chunk] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closing = False
        self._broken: str | None = None
        self._count = 0
        self._ended = threading.Event()
        self.stats = {"tasks": 0, "failed": 0, "workers_started": 0, "workers_died": 0}

    @property
    def broken(self) -> str | None:
        return self._broken

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def workers(self) -> list[threading.Thread]:
        return [t for t in self._threads if t.is_alive()]

    def _spawn(self) -> None:
        # Called with the lock held.
        self._count += 1
        t = threading.Thread(
            target=self._work, name=f"{self._config.name}_{self._count - 1}", daemon=True
        )
        self._threads.append(t)
        self.stats["workers_started"] += 1
        t.start()

    def start(self) -> None:
        with self._cond:
            while len(self._threads) < self._max:
                self._spawn()

    def submit(self, chunk: Chunk) -> None:
        with self._cond:
            if self._broken is not None:
                self._fail(chunk, Failure(BROKEN, RuntimeError(self._broken)))
                return
            self._queue.append(chunk)
            if self._idle > len(self._queue) - 1:
                self._cond.notify()
            elif len(self._threads) < self._max:
                self._spawn()
            elif self._idle:
                self._cond.notify()

    def _fail(self, chunk: Chunk, failure: Failure) -> None:
        for idx in chunk.indices:
            chunk.sink.deliver(idx, False, failure)
        chunk.release()

    def _work(self) -> None:
        mark_internal_thread()
        config = self._config
        me = threading.current_thread()
        if config.initializer is not None:
            try:
                config.initializer(*config.initargs)
            except BaseException as exc:  # noqa: BLE001
                logging.getLogger(config.init_logger).critical(
                    "Exception in initializer:", exc_info=True
                )
                self._set_broken(f"a thread initializer failed: {exc!r}")
                return
        done = 0
        limit = config.max_tasks_per_child
        queue = self._queue
        cond = self._cond
        try:
            while True:
                with cond:
                    while not queue and not self._closing:
                        self._idle += 1
                        cond.wait()
                        self._idle -= 1
                    if not queue:
                        return
                    chunk = queue.popleft()
                if not chunk.sink.claim():
                    chunk.release()
                    continue
                outcomes = run_items(chunk.fn, chunk.mode, chunk.items)
                sink = chunk.sink
                self.stats["tasks"] += len(outcomes)
                for idx, (ok, value) in zip(chunk.indices, outcomes, strict=True):
                    if ok:
                        sink.deliver(idx, True, value)
                    else:
                        self.stats["failed"] += 1
                        sink.deliver(idx, False, Failure(RAISED, value))
                chunk.release()
                del outcomes, chunk, sink, value
                done += 1
                if limit is not None and done >= limit:
                    with cond:
                        self._threads.remove(me)
                        if not self._closing and (queue or self._config.start_all):
                            self._spawn()
                    return
        finally:
            with cond:
                if self._closing and not any(
                    t.is_alive() and t is not me for t in self._threads
                ):
                    self._ended.set()

    def _set_broken(self, why: str) -> None:
        with self._cond:
            self._broken = why
            failed = list(self._queue)
            self._queue.clear()
            self._closing = True
            self._cond.notify_all()
        for chunk in failed:
            self._fail(chunk, Failure(BROKEN, RuntimeError(why)))
        self._check_ended()

    def shutdown(self, *, wait: bool, cancel_pending: bool) -> None:
        with self._cond:
            self._closing = True
            dropped: list[Chunk] = []
            if cancel_pending:
                dropped = list(self._queue)
                self._queue.clear()
            self._cond.notify_all()
        for chunk in dropped:
            self._fail(chunk, Failure(CANCELLED, RuntimeError("shut down before it ran")))
        self._check_ended()
        if wait:
            self.join()

    def terminate(self) -> None:
        with self._cond:
            self._closing = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for chunk in dropped:
            self._fail(chunk, Failure(CANCELLED, RuntimeError("the pool was terminated")))
        self._check_ended()

    def _check_ended(self) -> None:
        with self._cond:
            if self._closing and not any(t.is_alive() for t in self._threads):
                self._ended.set()

    def join(self, timeout: float | None = None) -> bool:
        me = threading.current_thread()
        for t in list(self._threads):
            if t is not me:
                t.join(timeout)
        if all(not t.is_alive() or t is me for t in self._threads):
            self._ended.set()
        return self._ended.is_set()

