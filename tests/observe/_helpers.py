"""Shared by the observe tests: synthetic timelines, PNG decoding, the Chromium helpers."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal._core._events import TaskEvent, WorkerEvent
from shoal.observe import Timeline

ROOT = Path(__file__).resolve().parents[2]
#: A time far from zero, as time.monotonic() values are.
BASE = 5000.0


def synthetic(n: int = 40, workers: int = 4, seed: int = 1) -> Timeline:
    """Tasks packed onto ``workers`` workers as a pool would run them; every 13th fails (from
    the 6th), every 11th (from the 4th) was timed with its chunk; a worker dies at 1.0 s; the
    caller marks a moment and works in a region."""
    rnd = random.Random(seed)
    timeline = Timeline(title="synthetic")
    free = [BASE] * workers
    for i in range(n):
        w = min(range(workers), key=lambda k: free[k])
        d = rnd.uniform(0.05, 0.3)
        timeline.task_done(
            TaskEvent(
                1,
                i,
                f"ShoalPoolWorker-{w + 1}",
                4000 + w,
                free[w],
                free[w] + d,
                i % 13 != 5,
                approximate=i % 11 == 3,
            )
        )
        free[w] += d + 0.01
    for w in range(workers):
        timeline.worker_changed(
            WorkerEvent(f"ShoalPoolWorker-{w + 1}", 4000 + w, BASE - 0.1, "started")
        )
    timeline.worker_changed(
        WorkerEvent("ShoalPoolWorker-2", 4001, BASE + 1.0, "died", "killed by SIGKILL")
    )
    timeline.mark("Mark", at=BASE + 0.02)
    timeline.notes.append(type(timeline.notes[0])("other work", BASE + 0.1, BASE + 0.6))
    return timeline


def read_png(path: Path) -> Any:
    """The image as an (h, w, channels) array of 0-255 integers."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(str(path))
    if image.dtype != np.uint8:
        image = np.round(image * 255).astype(np.int16)
    return image[..., :3].astype(np.int16)


def color_pixels(image: Any, hex_color: str, tolerance: int = 12) -> int:
    """How many pixels are within ``tolerance`` of ``hex_color`` in every channel."""
    import numpy as np

    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(image - rgb) <= tolerance).all(axis=-1).sum())


def make_module() -> ModuleType:
    """docs/timeline/make.py, the script that draws the committed pictures (and knows how to
    run headless Chromium)."""
    name = "shoal_docs_timeline_make"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "timeline" / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
