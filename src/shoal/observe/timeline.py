"""A record of every task a pool ran: which worker, when, and how it ended.

``shoal.Pool(..., trace=True)`` (or ``trace=Timeline()``) attaches a :class:`Timeline` to the pool;
the backend calls :meth:`Timeline.task_done` for every finished task and
:meth:`Timeline.worker_changed` when a worker starts or ends. The timeline then exports itself as a
Chrome trace (open it in https://ui.perfetto.dev), a self-contained HTML page, a PNG Gantt chart
(with matplotlib: ``pip install 'shoal[plot]'``) or a compact text Gantt for terminals.

The caller can add its own moments and spans to a row of their own (``"main"`` by default) with
:meth:`Timeline.mark` and :meth:`Timeline.region`, so a picture shows what the main program did
while the workers ran.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shoal._core._events import TaskEvent, WorkerEvent
from shoal.observe import _html, _png, _text, _trace
from shoal.observe._layout import Layout, layout, task_count

__all__ = ["Note", "Timeline", "write_html"]


@dataclass(frozen=True, slots=True)
class Note:
    """Something the caller marked: an instant (``end == start``) or a span, on a row of its own."""

    text: str
    start: float
    end: float
    row: str = "main"


class Timeline:
    """Every finished task of a pool (or of several), in the order they were reported.

    Implements the core's ``Listener`` protocol; its methods may be called from any thread.

    Args:
        events: task events to start with (a timeline read back, or merged from elsewhere).
        title: a name for the pictures (the HTML page's and the PNG's title).
    """

    def __init__(self, events: Iterable[TaskEvent] = (), *, title: str = "") -> None:
        self._lock = threading.Lock()
        #: The task events, in the order they arrived.
        self.events: list[TaskEvent] = list(events)
        #: Workers starting and ending, in the order they were reported.
        self.worker_events: list[WorkerEvent] = []
        #: The caller's marks and regions.
        self.notes: list[Note] = []
        self.title = title
        #: Time zero of the pictures (``time.monotonic()`` seconds); None: the first task's start.
        self.origin: float | None = None
        #: The process the notes were made in (their row's pid in a Chrome trace).
        self.pid = os.getpid()

    # -- the Listener protocol: called on a backend's thread, must be quick ---------------------

    def task_done(self, event: TaskEvent) -> None:
        """Record a finished task."""
        with self._lock:
            self.events.append(event)

    def worker_changed(self, event: WorkerEvent) -> None:
        """Record a worker starting or ending."""
        with self._lock:
            self.worker_events.append(event)

    # -- the caller's own notes ------------------------------------------------------------------

    def mark(self, text: str, *, row: str = "main", at: float | None = None) -> None:
        """Mark a moment on a row of notes (``at``: a ``time.monotonic()`` value; None: now)."""
        now = time.monotonic() if at is None else at
        with self._lock:
            self.notes.append(Note(text, now, now, row))

    @contextmanager
    def region(self, text: str, *, row: str = "main") -> Iterator[None]:
        """Record the time spent in a ``with`` block as a span on a row of notes."""
        start = time.monotonic()
        try:
            yield
        finally:
            end = time.monotonic()
            with self._lock:
                self.notes.append(Note(text, start, end, row))

    def extend(self, events: Iterable[TaskEvent]) -> None:
        """Add task events recorded elsewhere (say, by a pool that ran inside a task)."""
        with self._lock:
            self.events.extend(events)

    @classmethod
    def merge(cls, *timelines: Timeline, title: str = "") -> Timeline:
        """One timeline holding the events and notes of several (say, two pools run in turn)."""
        merged = cls(title=title)
        if timelines:
            merged.pid = timelines[0].pid
        for timeline in timelines:
            with timeline._lock:
                merged.events += timeline.events
                merged.worker_events += timeline.worker_events
                merged.notes += timeline.notes
        return merged

    # -- views -----------------------------------------------------------------------------------

    def tasks(self) -> list[TaskEvent]:
        """The task events sorted by start time (then worker)."""
        with self._lock:
            events = list(self.events)
        return sorted(events, key=lambda e: (e.start, e.worker, e.job, e.index))

    def failed(self) -> list[TaskEvent]:
        """The tasks that did not end well, by start time."""
        return [e for e in self.tasks() if not e.ok]

    def workers(self) -> list[str]:
        """The workers' names, in the order the pictures show them."""
        return [row.name for row in self.layout().rows if row.kind == "worker"]

    def layout(self) -> Layout:
        """The rows and time span the pictures draw (a snapshot)."""
        with self._lock:
            events = list(self.events)
            changes = list(self.worker_events)
            notes = [(n.row, n.text, n.start, n.end) for n in self.notes]
        return layout(events, changes, notes, self.origin)

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        with self._lock:
            count, failed = task_count(self.events)
        return f"<Timeline {count} tasks, {failed} failed>"

    # -- exports ---------------------------------------------------------------------------------

    def to_chrome_trace(self, dest: str | os.PathLike[str] | IO[str]) -> None:
        """Write the timeline in the Trace Event Format, for https://ui.perfetto.dev or
        ``chrome://tracing``: one track per worker, one complete event per task.

        Args:
            dest: a path, or a text file open for writing.
        """
        data = _trace.to_trace(self)
        _trace.dump(data, dest)

    def to_trace_dict(self) -> dict[str, Any]:
        """The Chrome trace as a dict (what :meth:`to_chrome_trace` writes)."""
        return _trace.to_trace(self)

    @classmethod
    def load(cls, source: str | os.PathLike[str] | IO[str]) -> Timeline:
        """Read back a trace that :meth:`to_chrome_trace` wrote.

        Raises:
            ValueError: the file is not a Chrome trace.
        """
        timeline = cls()
        _trace.load_into(timeline, source)
        return timeline

    def to_html(self, path: str | os.PathLike[str], *, title: str | None = None) -> None:
        """Write a self-contained HTML page (no network): a row per worker, a bar per task
        colored by outcome; hovering a bar shows the task and its timing."""
        name = title if title is not None else (self.title or "shoal timeline")
        Path(path).write_text(_html.page([(name, self)], title=name), encoding="utf-8")

    def to_png(
        self,
        path: str | os.PathLike[str],
        *,
        title: str | None = None,
        width: float = 10.0,
        dpi: int = 100,
    ) -> None:
        """Draw a Gantt chart with matplotlib (``pip install 'shoal[plot]'``).

        Args:
            path: the PNG file to write.
            title: the chart's title (None: the timeline's).
            width: the figure's width in inches; its height follows the number of rows.
            dpi: dots per inch.

        Raises:
            ImportError: matplotlib is not installed.
        """
        name = title if title is not None else self.title
        _png.draw(self.layout(), path, title=name, width=width, dpi=dpi)

    def text_gantt(self, width: int = 72, *, legend: bool = True) -> str:
        """A compact Gantt chart for terminals, ``width`` characters wide.

        One line per worker; each task is drawn with its own character (tasks numbered in
        submission order: ``0``-``9``, ``a``-``z``, ``A``-``Z``, then again), failed tasks with
        ``!``; the caller's marks are ``*`` and its regions ``~`` on rows of their own. Below: a
        time axis in seconds and, with ``legend``, one line that counts tasks, failures and
        workers, and the marks' texts.
        """
        return _text.gantt(self.layout(), width=width, legend=legend)


def write_html(
    path: str | os.PathLike[str],
    sections: Iterable[tuple[str, Timeline]],
    *,
    title: str = "shoal timelines",
) -> None:
    """Write one self-contained HTML page with a Gantt chart per ``(heading, timeline)``."""
    Path(path).write_text(_html.page(list(sections), title=title), encoding="utf-8")
