"""Core events: what ran where and when, for the observers in ``shoal.observe``.

A backend owns one :class:`EventHub`. Listeners (a Timeline, statistics) subscribe to it; with
none subscribed, emitting costs one attribute check per chunk. Times are ``time.monotonic()``
seconds: on Linux that clock is the same in every process, so a worker's start and end times
compare with the parent's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

__all__ = ["EventHub", "Listener", "TaskEvent", "WorkerEvent"]


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One task (an item of a chunk) that ended, successfully or not."""

    #: The call it belongs to (one ``map``/``apply``/``submit``), numbered per pool.
    job: int
    #: Its position in that call's input.
    index: int
    #: The worker that ran it: a process name (``ShoalPoolWorker-3``) or a thread name.
    worker: str
    #: The worker's process id (the parent's for threads).
    pid: int | None
    #: When it started and ended, ``time.monotonic()`` seconds.
    start: float
    end: float
    #: False when it raised, or its worker died, or it timed out.
    ok: bool
    #: True when ``start``/``end`` are its chunk's span rather than its own (tasks shorter than
    #: about 100 us are timed per chunk, not each); the event then stands for ``count`` tasks,
    #: ``index`` to ``index + count - 1``.
    approximate: bool = False
    count: int = 1


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """A worker started or ended."""

    worker: str
    pid: int | None
    time: float
    #: "started", or how it ended: "exited", "died", "stopped", "retired".
    what: str
    detail: str = ""


class Listener(Protocol):
    """What an observer implements; every method is optional in spirit (implement all, do
    nothing where not interested). Called on the backend's own thread: must not block."""

    def task_done(self, event: TaskEvent) -> None: ...

    def worker_changed(self, event: WorkerEvent) -> None: ...


class EventHub:
    """Fans events out to listeners."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()
        #: True while someone listens: backends record task times only then.
        self.active = False

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self.active = True

    def remove(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)
            self.active = bool(self._listeners)

    def task_done(self, event: TaskEvent) -> None:
        for listener in self._listeners:
            listener.task_done(event)

    def worker_changed(self, event: WorkerEvent) -> None:
        for listener in self._listeners:
            listener.worker_changed(event)
