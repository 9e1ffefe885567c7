"""What every picture of a timeline shares: its rows, its time span, its axis ticks, its colors.

The text Gantt, the HTML page and the PNG draw the same rows in the same order, so a worker is
found at the same place in each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal._core._events import TaskEvent, WorkerEvent

__all__ = [
    "COLORS",
    "Layout",
    "Row",
    "format_seconds",
    "layout",
    "natural_key",
    "nice_ticks",
    "plural",
    "task_count",
    "task_label",
]

#: Bar colors, shared by the HTML page and the PNG (colorblind-safe: blue and vermilion).
COLORS = {
    "ok": "#4477aa",
    "approximate": "#88aacc",
    "failed": "#d55e00",
    "note": "#777777",
    "mark": "#222222",
}


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``Worker-2`` before ``Worker-10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


def _family(name: str) -> str:
    """A worker's pool, as far as its name tells: the name up to its first digit."""
    return re.sub(r"\d.*", "", name)


def _row_key(rows: dict[str, Row]) -> Callable[[str], tuple[float, str, Any]]:
    """Workers of one pool (one :func:`_family`) stay together, in natural order; pools come in
    the order they first did something."""
    first: dict[str, float] = {}
    for name, row in rows.items():
        times = [e.start for e in row.tasks] + [t for t, _w, _d in row.changes]
        family = _family(name)
        first[family] = min([first.get(family, math.inf), *times])

    def order(name: str) -> tuple[float, str, Any]:
        return (first[_family(name)], _family(name), natural_key(name))

    return order


def task_label(event: TaskEvent) -> str:
    """How a task is named in tooltips and traces (an approximate event names its range)."""
    if event.count > 1:
        return f"job {event.job} #{event.index}-{event.index + event.count - 1}"
    return f"job {event.job} #{event.index}"


def task_count(events: Iterable[TaskEvent]) -> tuple[int, int]:
    """How many tasks the events stand for, and how many of them failed."""
    total = failed = 0
    for e in events:
        total += e.count
        if not e.ok:
            failed += e.count
    return total, failed


@dataclass
class Row:
    """One horizontal line of a picture: a worker, or a row of the caller's notes."""

    name: str
    #: "worker" or "note".
    kind: str
    pid: int | None = None
    tasks: list[TaskEvent] = field(default_factory=list)
    #: (text, start, end) for note rows; end == start for an instant mark.
    notes: list[tuple[str, float, float]] = field(default_factory=list)
    #: (time, what, detail) of the worker's start/end events.
    changes: list[tuple[float, str, str]] = field(default_factory=list)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class Layout:
    """The rows of a timeline, their time span, and the tasks in their submission order."""

    rows: list[Row]
    t0: float
    t1: float
    #: Every task, sorted by (job, index, start): the order the text Gantt numbers them in.
    ordered: list[TaskEvent]

    @property
    def span(self) -> float:
        return self.t1 - self.t0

    def summary(self, decimals: int = 2) -> str:
        """``12 tasks on 3 workers in 1.25 s, 1 failed``."""
        count, failed = task_count(self.ordered)
        workers = sum(1 for r in self.rows if r.kind == "worker")
        return (
            f"{plural(count, 'task')} on {plural(workers, 'worker')} in "
            f"{self.span:.{decimals}f} s, {failed} failed"
        )


def layout(
    tasks: Iterable[TaskEvent],
    workers: Iterable[WorkerEvent],
    notes: Iterable[tuple[str, str, float, float]],
    origin: float | None = None,
) -> Layout:
    """Group a timeline's events into rows.

    Args:
        tasks: the task events.
        workers: the worker events; a worker that started but ran nothing still gets a row.
        notes: ``(row, text, start, end)`` of the caller's annotations.
        origin: time zero; None: the earliest task or note.
    """
    by_worker: dict[str, Row] = {}
    ordered = sorted(tasks, key=lambda e: (e.job, e.index, e.start))
    for event in ordered:
        row = by_worker.setdefault(event.worker, Row(event.worker, "worker", event.pid))
        row.tasks.append(event)
    for change in workers:
        row = by_worker.setdefault(change.worker, Row(change.worker, "worker", change.pid))
        row.changes.append((change.time, change.what, change.detail))
    note_rows: dict[str, Row] = {}
    for row_name, text, start, end in notes:
        note_rows.setdefault(row_name, Row(row_name, "note")).notes.append((text, start, end))
    rows = [by_worker[name] for name in sorted(by_worker, key=_row_key(by_worker))]
    # Tasks are numbered by (job, index); jobs are numbered per pool, so a timeline merged from
    # several pools numbers each pool's tasks in turn, in the order the rows show the pools.
    pools: dict[str, int] = {}
    for row in rows:
        pools.setdefault(_family(row.name), len(pools))
    ordered.sort(key=lambda e: (pools[_family(e.worker)], e.job, e.index, e.start))
    rows += list(note_rows.values())  # in the order they were first used
    for row in rows:
        row.tasks.sort(key=lambda e: e.start)
        row.notes.sort(key=lambda n: n[1])
        row.changes.sort()
    starts = [e.start for e in ordered] + [n[1] for r in note_rows.values() for n in r.notes]
    ends = [e.end for e in ordered] + [n[2] for r in note_rows.values() for n in r.notes]
    if origin is None:
        origin = min(starts, default=0.0)
    end = max([*ends, origin])
    return Layout(rows, origin, end, ordered)


def nice_ticks(span: float, most: int = 6) -> list[float]:
    """Round tick positions from 0 to at least ``span``: at most ``most`` + 1 of them."""
    if span <= 0 or not math.isfinite(span):
        return [0.0]
    raw = span / max(1, most)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(span / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def format_seconds(value: float, ticks: Sequence[float] = ()) -> str:
    """A tick or duration in seconds, with as many decimals as the tick step needs."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else value
    decimals = 0 if step >= 1 or step == 0 else min(6, math.ceil(-math.log10(step) - 1e-9))
    if step and round(step, decimals) != step:
        decimals += 1  # 0.25 needs 2 decimals, not 1
    return f"{value:.{decimals}f}"
