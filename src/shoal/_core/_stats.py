"""Pool statistics: what ``pool.statistics()`` returns, and the recorder a backend feeds.

The recorder is fed once per chunk (never per task), so it costs nothing on the hot path.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shoal._core._outcome import short_repr

__all__ = ["SlowTask", "Statistics", "StatsRecorder", "WorkerStatistics"]

_SLOWEST = 10
#: Ended workers whose statistics are kept (the most recent).
_ENDED_KEPT = 64


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """One worker's share of the work."""

    name: str
    pid: int | None
    tasks: int
    #: Seconds spent in the user's code.
    busy: float
    #: Seconds since the worker started (until it ended, for an ended one).
    alive: float
    alive_now: bool

    @property
    def busy_fraction(self) -> float:
        return self.busy / self.alive if self.alive > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SlowTask:
    """One of the slowest tasks (or chunks of tasks, when ``count`` > 1)."""

    seconds: float
    job: int
    index: int
    count: int
    args: str


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of a pool's work so far."""

    tasks_done: int
    tasks_failed: int
    tasks_retried: int
    tasks_timed_out: int
    workers_started: int
    #: Workers that died or were stopped (not those that retired cleanly).
    workers_lost: int
    #: Seconds in the user's code, summed over workers.
    user_time: float
    #: Seconds tasks spent travelling (pickling, pipes, unpickling, waiting in a worker's
    #: queue), summed over chunks.
    transport_time: float
    #: Seconds workers were alive but had no task, summed over workers.
    idle_time: float
    workers: tuple[WorkerStatistics, ...] = field(default=())
    slowest: tuple[SlowTask, ...] = field(default=())

    def __str__(self) -> str:
        lines = [
            f"tasks: {self.tasks_done} done, {self.tasks_failed} failed, "
            f"{self.tasks_retried} retried, {self.tasks_timed_out} timed out",
            f"workers: {self.workers_started} started, {self.workers_lost} lost",
            f"time: {self.user_time:.3f} s in user code, {self.transport_time:.3f} s in "
            f"transport, {self.idle_time:.3f} s idle",
        ]
        for w in self.workers:
            lines.append(
                f"  {w.name} (pid {w.pid}): {w.tasks} tasks, busy {w.busy_fraction:.0%}"
            )
        for s in self.slowest:
            last = s.index + s.count - 1
            what = f"task {s.index}" if s.count == 1 else f"tasks {s.index}..{last}"
            lines.append(f"  slow: {s.seconds:.3f} s, job {s.job} {what}, args {s.args}")
        return "\n".join(lines)


class _Worker:
    __slots__ = ("busy", "ended", "name", "pid", "started", "tasks")

    def __init__(self, name: str, pid: int | None) -> None:
        self.name = name
        self.pid = pid
        self.tasks = 0
        self.busy = 0.0
        self.started = time.monotonic()
        self.ended: float | None = None


class StatsRecorder:
    """Accumulates what a backend reports; :meth:`snapshot` makes a :class:`Statistics`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Live workers by id() of the backend's key (the key itself is not kept, so a dead
        # worker's object is freed), and the last ended ones, a bounded number: a pool that
        # replaces workers for ever must not keep a record of each.
        self._workers: dict[int, _Worker] = {}
        self._ended: deque[_Worker] = deque(maxlen=_ENDED_KEPT)
        self._ended_user = 0.0
        self._ended_idle = 0.0
        self._slowest: list[tuple[float, int, SlowTask]] = []
        self._seq = itertools.count()
        self.done = 0
        self.failed = 0
        self.retried = 0
        self.timed_out = 0
        self.started = 0
        self.lost = 0
        self.transport = 0.0

    def worker_started(self, key: object, name: str, pid: int | None) -> None:
        with self._lock:
            self._workers[id(key)] = _Worker(name, pid)
            self.started += 1

    def worker_pid(self, key: object, pid: int | None) -> None:
        w = self._workers.get(id(key))
        if w is not None:
            w.pid = pid

    def worker_ended(self, key: object, lost: bool) -> None:
        with self._lock:
            w = self._workers.pop(id(key), None)
            if w is not None and w.ended is None:
                w.ended = time.monotonic()
                self._ended.append(w)
                self._ended_user += w.busy
                self._ended_idle += max(0.0, (w.ended - w.started) - w.busy)
            if lost:
                self.lost += 1

    def chunk_done(
        self,
        key: object,
        tasks: int,
        user: float,
        transport: float,
        job: int,
        index: int,
        items: Any,
    ) -> None:
        """A chunk of ``tasks`` ran for ``user`` seconds on worker ``key``; ``items`` are its
        arguments (only a short repr is kept, and only for the slowest)."""
        w = self._workers.get(id(key))
        if w is not None:
            w.tasks += tasks
            w.busy += user
        self.transport += max(0.0, transport)
        slowest = self._slowest
        if len(slowest) < _SLOWEST or user > slowest[0][0]:
            args = short_repr(items[0]) if tasks == 1 else f"{tasks} items"
            entry = (user, next(self._seq), SlowTask(user, job, index, tasks, args))
            if len(slowest) < _SLOWEST:
                heapq.heappush(slowest, entry)
            else:
                heapq.heapreplace(slowest, entry)

    def snapshot(self) -> Statistics:
        now = time.monotonic()
        with self._lock:
            workers = tuple(
                WorkerStatistics(
                    w.name, w.pid, w.tasks, w.busy,
                    (w.ended if w.ended is not None else now) - w.started, w.ended is None,
                )
                for w in [*self._ended, *self._workers.values()]
            )
            slowest = tuple(s for _, _, s in sorted(self._slowest, reverse=True))
        live = [w for w in workers if w.alive_now]
        user = self._ended_user + sum(w.busy for w in live)
        idle = self._ended_idle + sum(max(0.0, w.alive - w.busy) for w in live)
        return Statistics(
            tasks_done=self.done,
            tasks_failed=self.failed,
            tasks_retried=self.retried,
            tasks_timed_out=self.timed_out,
            workers_started=self.started,
            workers_lost=self.lost,
            user_time=user,
            transport_time=self.transport,
            idle_time=idle,
            workers=workers,
            slowest=slowest,
        )
