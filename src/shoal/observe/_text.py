"""The text Gantt chart: a timeline in a few lines of a terminal (``shoal demo`` prints them)::

    ShoalPoolWorker-1 | 00000000000000000000000000000000000000000000000000000000  |
    ShoalPoolWorker-2 |   11111111111111111111111111111111111111111111111111111111|
    ShoalPoolWorker-3 |  2222222222222222222222222222222222222222222222222222222  |
    main              |*~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~|
                      +------------+-----------+------------+-----------+---------
                      0.00         0.05        0.10         0.15        0.20 s
    3 tasks on 3 workers in 0.23 s, 0 failed (!)
    * 0.00 s apply_async x3 returned

Rows as in every picture (``_layout``); columns are equal slices of the time span, the axis's
ticks at round times. A task covers the columns its span touches (at least one); a later task
overwrites an earlier one in a shared column, but a failed task (``!``) is drawn last, so it is
never hidden.
"""

from __future__ import annotations

import string
import textwrap

from shoal.observe._layout import Layout, Row, format_seconds, nice_ticks

__all__ = ["FAILED", "LABELS", "MARK", "REGION", "gantt"]

#: The characters tasks are drawn with, in submission order (then again from the start).
LABELS = string.digits + string.ascii_lowercase + string.ascii_uppercase
FAILED = "!"
MARK = "*"
REGION = "~"
#: Widest worker name shown in full.
NAME_WIDTH = 28
#: More marks than this are counted, not listed, below the chart.
MAX_MARKS = 4


def _columns(start: float, end: float, t0: float, scale: float, cols: int) -> range:
    """The columns a span covers: at least one."""
    first = min(cols - 1, max(0, int((start - t0) * scale)))
    last = min(cols, max(first + 1, round((end - t0) * scale)))
    return range(first, last)


def _draw(row: Row, labels: dict[int, str], t0: float, scale: float, cols: int) -> str:
    cells = [" "] * cols
    failed: list[int] = []
    for event in row.tasks:
        span = _columns(event.start, event.end, t0, scale, cols)
        if event.ok:
            for c in span:
                cells[c] = labels[id(event)]
        else:
            failed.extend(span)
    for c in failed:  # drawn last: a failure is never hidden by a neighbour
        cells[c] = FAILED
    for _text, start, end in row.notes:
        if end > start:
            for c in _columns(start, end, t0, scale, cols):
                if cells[c] == " ":
                    cells[c] = REGION
    for _text, start, end in row.notes:
        if end == start:
            cells[_columns(start, end, t0, scale, cols)[0]] = MARK
    return "".join(cells)


def gantt(lay: Layout, *, width: int = 72, legend: bool = True) -> str:
    """Draw ``lay`` in ``width`` columns (at least 20 for the bars)."""
    if not lay.rows:
        return "(no tasks)"
    name_width = min(NAME_WIDTH, max(len(r.name) for r in lay.rows))
    cols = max(20, width - name_width - 3)
    labels = {id(e): LABELS[i % len(LABELS)] for i, e in enumerate(lay.ordered)}
    span = lay.span if lay.span > 0 else 1.0
    ticks = [t for t in nice_ticks(span, most=max(2, cols // 9)) if t <= span * (1 + 1e-9)]
    scale = cols / span
    lines = []
    for row in lay.rows:
        name = row.name if len(row.name) <= name_width else row.name[: name_width - 1] + "~"
        lines.append(f"{name:<{name_width}} |{_draw(row, labels, lay.t0, scale, cols)}|")
    axis = ["-"] * (cols + 1)
    marks = [" "] * (cols + 10)
    placed_end = 0
    for tick in ticks:
        c = min(cols, round(tick * scale))
        axis[c] = "+"
        text = format_seconds(tick, ticks)
        pos = min(c, len(marks) - len(text) - 2)
        if pos >= placed_end + (1 if placed_end else 0):
            marks[pos : pos + len(text)] = text
            placed_end = pos + len(text)
    marks[placed_end : placed_end + 2] = " s"
    pad = " " * (name_width + 1)
    lines.append(pad + "".join(axis))
    lines.append((pad + "".join(marks)).rstrip())
    if legend:
        summary = f"{lay.summary()} ({FAILED})"
        lines.append(summary)
        points = sorted((s, t) for r in lay.rows for t, s, e in r.notes if s == e)
        if 0 < len(points) <= MAX_MARKS:
            text = "; ".join(f"{MARK} {s - lay.t0:.2f} s {t}" for s, t in points)
            lines += textwrap.wrap(text, width=max(40, width), subsequent_indent="  ")
        elif points:
            lines.append(f"{len(points)} marks ({MARK})")
    return "\n".join(lines)
