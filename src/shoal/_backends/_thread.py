"""The thread backend: worker threads of this process, for I/O-bound work and ThreadPool.

A thread cannot be stopped from outside. So a task past its ``task_timeout`` fails with
``TaskTimeout`` at its deadline, its thread is *abandoned* (it finishes the stuck call in the
background, its result is dropped, then it exits) and a new thread takes its place, so the pool
never waits on a stuck thread. The same happens on Ctrl-C (``interrupt``) and ``terminate``:
running tasks are abandoned and reported as cancelled. What a stuck call holds (locks, files)
stays held until it returns: that, only processes can end.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import Any

from shoal._core._backend import WorkerConfig
from shoal._core._callbacks import mark_internal_thread
from shoal._core._events import EventHub, TaskEvent, WorkerEvent
from shoal._core._options import settle
from shoal._core._outcome import BROKEN, CANCELLED, RAISED, TIMEOUT, Failure, short_repr
from shoal._core._state import ExitResults, begin_thread_worker, end_thread_worker
from shoal._core._stats import Statistics, StatsRecorder
from shoal._core._task import ONE, STAR, Chunk
from shoal._errors import TaskTimeout

__all__ = ["ThreadBackend"]


class _Running:
    """What one worker thread is doing now (read by the watchdog)."""

    __slots__ = ("abandoned", "chunk", "exiting", "pos", "started", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.chunk: Chunk | None = None
        self.pos = 0
        self.started = 0.0
        self.abandoned = False
        #: Running worker_exit (terminate() abandons it there too).
        self.exiting = False


class ThreadBackend:
    """Runs chunks on a set of worker threads, started at once or on demand."""

    kind = "thread"

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._max = config.max_workers
        self._queue: deque[Chunk] = deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        # The watchdog waits on its own condition (same lock): a notify() meant to wake one idle
        # worker must never be taken by the watchdog instead.
        self._watch_cond = threading.Condition(lock)
        self._threads: list[threading.Thread] = []
        self._running: dict[threading.Thread, _Running] = {}
        self._idle = 0
        self._closing = False
        #: terminate() was called: threads that end now run no worker_exit.
        self._terminated = False
        self._broken: str | None = None
        self._count = itertools.count()
        self._ended = threading.Event()
        self._deadlines: list[tuple[float, int, _Running, Chunk, int]] = []
        self._seq = itertools.count()
        self._watchdog: threading.Thread | None = None
        self.recorder = StatsRecorder()
        #: Observers (timelines) subscribe here; tasks are timed only while one listens.
        self.events = EventHub()
        #: Threads given up on (stuck past a time limit, Ctrl-C, terminate).
        self.abandoned = 0
        #: What ``worker_exit`` gave in each thread that retired.
        self.exit_results = ExitResults()

    @property
    def broken(self) -> str | None:
        return self._broken

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def workers(self) -> list[threading.Thread]:
        return [t for t in self._threads if t.is_alive()]

    def _live(self) -> int:
        return sum(1 for r in self._running.values() if not r.abandoned)

    def _spawn(self, first: Chunk | None = None) -> None:
        # Called with the lock held. ``first``: the chunk it was started for, which it runs
        # without waiting for the lock (see _enqueue).
        t = threading.Thread(
            target=self._work,
            # In a list the thread empties: Thread keeps its args while it runs, and the chunk
            # (its sink, its result) must not live as long as the thread.
            args=([first] if first is not None else [],),
            name=f"{self._config.name}_{next(self._count)}",
            daemon=True,
        )
        self._threads.append(t)
        self._running[t] = _Running(t)
        self.recorder.worker_started(t, t.name, os.getpid())
        if self.events.active:
            started = WorkerEvent(t.name, os.getpid(), time.monotonic(), "started")
            self.events.worker_changed(started)
        t.start()

    def start(self) -> None:
        with self._cond:
            while self._live() < self._max:
                self._spawn()

    def submit(self, chunk: Chunk) -> None:
        with self._cond:
            if self._broken is not None:
                failure = Failure(BROKEN, RuntimeError(self._broken))
            else:
                self._enqueue(chunk)
                return
        self._fail(chunk, failure)

    def _enqueue(self, chunk: Chunk, front: bool = False) -> None:
        # Called with the lock held.
        if front:
            self._queue.appendleft(chunk)
        else:
            self._queue.append(chunk)
        if self._idle >= len(self._queue):
            self._cond.notify()
        elif self._live() < self._max and not self._closing:
            # The new thread takes the oldest chunk with it: were it to wait for this lock, a
            # caller submitting in a loop would keep it (and the GIL) and no task would start
            # until it stops (CPython's test_cancel_futures, on a loaded machine).
            self._spawn(self._queue.popleft())
        elif self._idle:
            self._cond.notify()

    def statistics(self) -> Statistics:
        return self.recorder.snapshot()

    def _fail(self, chunk: Chunk, failure: Failure) -> None:
        self.recorder.failed += len(chunk.indices)
        for idx in chunk.indices:
            chunk.sink.deliver(idx, False, failure)
        chunk.release()

    def _work(self, handoff: list[Chunk]) -> None:
        first = handoff.pop() if handoff else None
        mark_internal_thread()
        config = self._config
        me = threading.current_thread()
        state = self._running[me]
        begin_thread_worker()  # before the initializer, which may fill it
        if config.initializer is not None:
            try:
                config.initializer(*config.initargs)
            except BaseException as exc:
                logging.getLogger(config.init_logger).critical(
                    "Exception in initializer:", exc_info=True
                )
                self._set_broken(f"a thread initializer failed: {exc!r}")
                if first is not None:
                    self._fail(first, Failure(BROKEN, RuntimeError(self._broken)))
                end_thread_worker()
                return
        done = 0
        #: Leaving in an orderly way (the pool closing, max_tasks_per_child): run worker_exit.
        orderly = False
        limit = config.max_tasks_per_child
        queue = self._queue
        cond = self._cond
        try:
            while True:
                if first is not None:
                    chunk, first = first, None
                else:
                    with cond:
                        while not queue and not self._closing and not state.abandoned:
                            self._idle += 1
                            cond.wait()
                            self._idle -= 1
                        if not queue or state.abandoned:
                            orderly = not state.abandoned
                            return
                        chunk = queue.popleft()
                if not chunk.sink.claim():
                    chunk.release()
                    continue
                ran = self._run_chunk(state, chunk)
                # An idle thread must not keep the job, and so its results, alive (CPython's
                # test_release_task_refs).
                del chunk
                if not ran:
                    return  # abandoned: the watchdog has reported and replaced us
                done += 1
                if limit is not None and done >= limit:
                    # Before this thread is marked as leaving: join() waits for it until then.
                    self._run_exit(state)
                    with cond:
                        state.abandoned = True  # retire: a new thread takes the place
                        if not self._closing and (queue or config.start_all):
                            self._spawn()
                    return
        finally:
            if orderly:
                self._run_exit(state)
            end_thread_worker()
            self.recorder.worker_ended(me, lost=False)
            with cond:
                self._running.pop(me, None)
                if self._closing and not any(
                    t.is_alive() and t is not me for t in self._threads
                ):
                    self._ended.set()

    def _run_exit(self, state: _Running) -> None:
        """Run ``worker_exit`` in this retiring thread and keep what it gave (or raised). Not
        under terminate(), nor once the pool is broken: the state is dropped then, as a
        process worker's is. terminate() abandons a thread still in it (join() does not wait
        for it) and drops what it gives."""
        fn = self._config.worker_exit
        with self._cond:
            if fn is None or self._terminated or self._broken is not None:
                return
            state.exiting = True
        try:
            ok, value = True, fn()
        except BaseException as exc:  # noqa: BLE001 - reported by worker_exit_results()
            ok, value = False, Failure(RAISED, exc)
            del exc
        with self._cond:
            state.exiting = False
            if self._terminated:
                return
            # Added under the lock: terminate() either sees this thread exiting (and abandons
            # it) or finds its result already in.
            self.exit_results.add(ok, value, f"thread {state.thread.name}")

    def _run_chunk(self, state: _Running, chunk: Chunk) -> bool:
        """Run a chunk's items; False if this thread was abandoned meanwhile."""
        fn, mode, sink = chunk.fn, chunk.mode, chunk.sink
        timeout = chunk.opts.timeout if chunk.opts is not None else None
        events = self.events if self.events.active else None
        chunk_start = time.monotonic()
        for pos, item in enumerate(chunk.items):
            state.chunk, state.pos, state.started = chunk, pos, time.monotonic()
            if timeout is not None:
                self._arm(state, chunk, pos, state.started + timeout)
            try:
                if mode == ONE:
                    ok, value = True, fn(item)
                elif mode == STAR:
                    ok, value = True, fn(*item)
                else:
                    ok, value = True, fn(*item[0], **item[1])
            except BaseException as exc:  # noqa: BLE001 - a task's SystemExit is its own error
                ok, value = False, exc
            with self._cond:
                if state.abandoned:
                    return False
                state.chunk = None
            self.recorder.done += 1
            if events is not None:
                events.task_done(
                    TaskEvent(chunk.job, chunk.indices[pos], state.thread.name, os.getpid(),
                              state.started, time.monotonic(), ok)
                )
            if ok:
                sink.deliver(chunk.indices[pos], True, value)
            else:
                self._fail_item(chunk, pos, Failure(RAISED, value))
            del value
        n = len(chunk.indices)
        self.recorder.chunk_done(
            state.thread, n, time.monotonic() - chunk_start, 0.0, chunk.job,
            chunk.indices[0] if n else 0,
            chunk.items,
        )
        chunk.release()
        return True

    def _fail_item(self, chunk: Chunk, pos: int, failure: Failure) -> None:
        retry, delay = settle(chunk, pos, failure)
        if retry is not None:
            self.recorder.retried += 1
            if delay > 0:
                timer = threading.Timer(delay, self._requeue, (retry,))
                timer.daemon = True
                timer.start()
            else:
                self._requeue(retry)
            return
        self.recorder.failed += 1
        chunk.sink.deliver(chunk.indices[pos], False, failure)

    def _requeue(self, chunk: Chunk) -> None:
        with self._cond:
            if not self._closing or self._queue or self._live():
                self._enqueue(chunk, front=True)
                return
        self._fail(chunk, Failure(CANCELLED, RuntimeError("the pool was shut down")))

    # ---- time limits -----------------------------------------------------------------------

    def _arm(self, state: _Running, chunk: Chunk, pos: int, deadline: float) -> None:
        with self._cond:
            heapq.heappush(self._deadlines, (deadline, next(self._seq), state, chunk, pos))
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch, name=f"{self._config.name}-watchdog", daemon=True
                )
                self._watchdog.start()
            else:
                self._watch_cond.notify()

    def _watch(self) -> None:
        mark_internal_thread()
        cond = self._watch_cond
        while True:
            with cond:
                while True:
                    if self._closing and not self._deadlines:
                        self._watchdog = None
                        return
                    now = time.monotonic()
                    if self._deadlines and self._deadlines[0][0] <= now:
                        _, _, state, chunk, pos = heapq.heappop(self._deadlines)
                        if state.chunk is chunk and state.pos == pos and not state.abandoned:
                            break
                        continue
                    wait = self._deadlines[0][0] - now if self._deadlines else None
                    cond.wait(wait)
                rest = self._abandon(state)
            self._expire(chunk, pos, rest)

    def _abandon(self, state: _Running) -> list[int]:
        """Give up on a thread stuck in a task (lock held): a new thread replaces it."""
        state.abandoned = True
        self.abandoned += 1
        self.recorder.worker_ended(state.thread, lost=True)
        chunk = state.chunk
        assert chunk is not None
        rest = list(range(state.pos + 1, len(chunk.items)))
        if not self._closing and (self._queue or self._config.start_all):
            self._spawn()
        return rest

    def _expire(self, chunk: Chunk, pos: int, rest: list[int]) -> None:
        self.recorder.timed_out += 1
        limit = chunk.opts.timeout if chunk.opts is not None else None
        err = TaskTimeout(
            f"task {chunk.indices[pos]} ran longer than its task_timeout of {limit} s; its "
            "thread cannot be stopped, so it was abandoned and replaced (the call goes on in "
            "the background; its result will be dropped)"
        )
        self._fail_item(chunk, pos, Failure(TIMEOUT, err, args=short_repr(chunk.items[pos])))
        if rest:
            self._requeue(chunk.subset(rest))

    # ---- ending ----------------------------------------------------------------------------

    def _set_broken(self, why: str) -> None:
        with self._cond:
            self._broken = why
            failed = list(self._queue)
            self._queue.clear()
            self._closing = True
            self._cond.notify_all()
            self._watch_cond.notify_all()
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
            self._watch_cond.notify_all()
        for chunk in dropped:
            self._fail(chunk, Failure(CANCELLED, RuntimeError("shut down before it ran")))
        self._check_ended()
        if wait:
            self.join()

    def _drop_running(self, why: str) -> list[tuple[Chunk, list[int]]]:
        # Called with the lock held: abandon every thread that is inside a task.
        dropped = []
        for state in self._running.values():
            if state.chunk is not None and not state.abandoned:
                chunk = state.chunk
                positions = list(range(state.pos, len(chunk.items)))
                state.abandoned = True
                self.abandoned += 1
                self.recorder.worker_ended(state.thread, lost=True)
                dropped.append((chunk, positions))
        return dropped

    def _cancel(
        self, dropped: list[tuple[Chunk, list[int]]], queued: list[Chunk], why: str
    ) -> None:
        failure = Failure(CANCELLED, RuntimeError(why))
        for chunk in queued:
            self._fail(chunk, failure)
        for chunk, positions in dropped:
            for p in positions:
                chunk.sink.deliver(chunk.indices[p], False, failure)

    def interrupt(self) -> None:
        """Ctrl-C: cancel what is queued; running tasks are abandoned (threads cannot be
        stopped) and reported as cancelled; new threads replace them."""
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
            dropped = self._drop_running("interrupted")
            if not self._closing and self._config.start_all:
                while self._live() < self._max:
                    self._spawn()
        if dropped:
            logging.getLogger("shoal").warning(
                "KeyboardInterrupt: %d running task(s) in threads cannot be stopped; they were "
                "abandoned and go on in the background", len(dropped)
            )
        self._cancel(dropped, queued, "cancelled by KeyboardInterrupt")

    def cancel_running(self, sink: Any) -> None:
        """A forced cancel: the thread cannot be stopped, so it is abandoned and replaced."""
        with self._cond:
            states = [
                s for s in self._running.values()
                if s.chunk is not None and s.chunk.sink is sink and not s.abandoned
            ]
            for state in states:
                state.abandoned = True
                self.abandoned += 1
                self.recorder.worker_ended(state.thread, lost=True)
                if not self._closing and (self._queue or self._config.start_all):
                    self._spawn()

    def terminate(self) -> None:
        with self._cond:
            self._closing = True
            self._terminated = True
            queued = list(self._queue)
            self._queue.clear()
            dropped = self._drop_running("terminated")
            for state in self._running.values():
                if state.exiting and not state.abandoned:
                    # In worker_exit: like a running task, it cannot be stopped, only left.
                    state.abandoned = True
                    self.abandoned += 1
            self._cond.notify_all()
            self._watch_cond.notify_all()
        self._cancel(dropped, queued, "the pool was terminated")
        self._check_ended()

    def _check_ended(self) -> None:
        with self._cond:
            if self._closing and not any(
                t.is_alive() and not self._is_abandoned(t) for t in self._threads
            ):
                self._ended.set()

    def _is_abandoned(self, t: threading.Thread) -> bool:
        state = self._running.get(t)
        return state is not None and state.abandoned

    def join(self, timeout: float | None = None) -> bool:
        me = threading.current_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            if t is me or self._is_abandoned(t):
                continue  # never wait on a thread stuck in a task we gave up on
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._check_ended()
        return self._ended.is_set()
