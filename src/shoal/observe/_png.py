"""The PNG Gantt chart, drawn with matplotlib (the optional extra ``shoal[plot]``).

matplotlib is imported when a chart is drawn, never at import time, and through its object API
(``Figure`` + the Agg canvas), not ``pyplot``: no global figure state, no GUI backend, safe in a
thread. The file is written without a timestamp or version in its metadata, so the same timeline
gives the same bytes with the same matplotlib.
"""

from __future__ import annotations

import os
from typing import Any

from shoal.observe._layout import COLORS, Layout, nice_ticks

__all__ = ["draw", "import_matplotlib"]


def import_matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``, or an ImportError that names the extra to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Timeline.to_png needs matplotlib, which is not installed: "
            "pip install 'shoal[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure, FigureCanvasAgg


def draw(lay: Layout, path: str | os.PathLike[str], *, title: str, width: float, dpi: int) -> None:
    """Draw ``lay`` as a Gantt chart into the PNG file ``path``."""
    figure_cls, canvas_cls = import_matplotlib()
    rows = lay.rows or []
    height = 1.1 + 0.32 * max(1, len(rows))
    fig = figure_cls(figsize=(width, height), dpi=dpi)
    canvas_cls(fig)
    ax = fig.add_subplot(1, 1, 1)
    ticks = nice_ticks(lay.span, most=8)
    end = ticks[-1] if ticks[-1] > 0 else 1.0
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i  # the first row on top
        if i % 2 == 0:
            ax.axhspan(y - 0.5, y + 0.5, color="#f6f7f9", zorder=0, linewidth=0)
        for key, wanted in (
            ("ok", (True, False)),
            ("approximate", (True, True)),
            ("failed", (False, None)),
        ):
            spans = [
                (e.start - lay.t0, max(e.end - e.start, end / 2000))
                for e in row.tasks
                if e.ok == wanted[0] and (wanted[1] is None or e.approximate == wanted[1])
            ]
            if spans:
                ax.broken_barh(
                    spans,
                    (y - 0.34, 0.68),
                    facecolors=COLORS[key],
                    edgecolors="white",
                    linewidth=0.4,
                    zorder=2,
                )
        regions = [(s - lay.t0, e - s) for _t, s, e in row.notes if e > s]
        if regions:
            ax.broken_barh(
                regions,
                (y - 0.15, 0.3),
                facecolors=COLORS["note"],
                edgecolors="white",
                linewidth=0.6,
                zorder=2,
            )
        marks = [s - lay.t0 for _t, s, e in row.notes if e == s]
        if marks:
            ax.plot(
                marks,
                [y] * len(marks),
                linestyle="none",
                marker="D",
                markersize=5,
                color=COLORS["mark"],
                zorder=3,
            )
        ends = [
            t - lay.t0 for t, what, _d in row.changes if what != "started" and lay.t0 <= t <= lay.t1
        ]
        if ends:
            ax.plot(
                ends,
                [y] * len(ends),
                linestyle="none",
                marker="x",
                markersize=8,
                color=COLORS["failed"],
                zorder=3,
            )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.name for r in reversed(rows)], fontsize=9)
    ax.set_ylim(-0.5, max(1, len(rows)) - 0.5)
    ax.set_xlim(-end / 100, end)  # room for a mark at 0
    ax.set_xticks(ticks)
    ax.set_xlabel("seconds")
    ax.grid(axis="x", color="#dddddd", linewidth=0.8, zorder=1)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    summary = lay.summary()
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=10, loc="left")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", metadata={"Software": None})
