"""The committed timeline pictures (docs/timeline) are what the code draws from the committed
trace: redraw them into a temporary directory with docs/timeline/make.py and compare.

Tolerances. Both pictures are drawn from the same trace, so every bar has the same geometry on
any machine; only text rasterization can differ: glyph outlines, hinting and anti-aliasing vary
between FreeType, matplotlib and Chromium builds, and Chromium picks the system's fonts. So the
size must match exactly and the bars' colors must cover the same area (within 1%), while up to
2% (PNG Gantt) or 4% (page screenshot) of all pixels may differ by more than 32 levels in a
channel. Measured: text and bars together are 5% of the page's pixels (the rest is white), and
rendering the page with Liberation Sans instead of DejaVu Sans changes 2.5% of them; a bar drawn
in the wrong place fails the color-area check. On this project's machine the redrawn pictures
are pixel-identical to the committed ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.observe import Timeline
from shoal.observe._layout import COLORS

from ._helpers import ROOT, color_pixels, make_module, read_png

DOCS = ROOT / "docs" / "timeline"


def _compare(committed: Path, fresh: Path, share: float) -> None:
    import numpy as np

    a: Any = read_png(committed)
    b: Any = read_png(fresh)
    assert a.shape == b.shape, f"{committed.name}: {a.shape} committed, {b.shape} redrawn"
    differ = float((np.abs(a - b) > 32).any(axis=-1).mean())
    assert differ <= share, (
        f"{differ:.2%} of {committed.name}'s pixels differ (at most {share:.0%}); redraw with "
        "python docs/timeline/make.py"
    )
    for key in ("ok", "failed"):
        x, y = color_pixels(a, COLORS[key]), color_pixels(b, COLORS[key])
        assert abs(x - y) <= 0.01 * max(x, y) + 10, (committed.name, key, x, y)


def test_the_committed_trace_is_a_shoal_timeline() -> None:
    data = json.loads((DOCS / "demo_trace.json").read_text())
    assert data["otherData"]["format"] == "shoal-timeline/1"
    timeline = Timeline.load(DOCS / "demo_trace.json")
    # The parallelism scene: 4 tasks on a ThreadPool(2), then 4 on a Pool(2).
    assert len(timeline.events) == 8
    assert sorted({e.worker for e in timeline.events}) == [
        "ShoalPoolWorker-1",
        "ShoalPoolWorker-2",
        "ShoalThreadPool_0",
        "ShoalThreadPool_1",
    ]
    assert all(e.ok for e in timeline.events)


def test_committed_pictures_match_the_trace(tmp_path: Path) -> None:
    make = make_module()
    gantt, page = tmp_path / "gantt.png", tmp_path / "page.png"
    make.render(DOCS / "demo_trace.json", gantt, page)
    _compare(DOCS / "gantt.png", gantt, 0.02)
    _compare(DOCS / "page.png", page, 0.04)
    # Not blank: the tasks' bars are there.
    assert color_pixels(read_png(page), COLORS["ok"]) > 10000
    assert color_pixels(read_png(gantt), COLORS["ok"]) > 10000
