"""Asynchronous and blocking: ``apply_async``, then ``get()``.

Each ``apply_async`` returns an ``AsyncResult`` at once, and the tasks run side by side: the
result will be handed over later (asynchronous). But the caller then sits in ``get()`` and does
nothing until the value arrives (blocking), like waiting for the download tool's "ding". The
tutorial's version calls ``close()`` and ``join()`` first; ``get()`` alone waits just the same.

Run it with ``python examples/guide/async_blocking.py``; it draws
``docs/guide/img/async_blocking.png``. ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def download(name: str) -> str:
    time.sleep(3 * TIME_SCALE)
    return f"{name} downloaded"


if __name__ == "__main__":
    with shoal.Pool(processes=3, trace=True) as pool:
        timeline = pool.timeline
        results = [pool.apply_async(download, (f"file {i}",)) for i in range(3)]
        timeline.mark("apply_async x3 returned")
        with timeline.region("blocked in get()"):
            values = [r.get() for r in results]  # in submission order
        print(values)
    timeline.title = "apply_async x3, then get(): the caller waits"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "async_blocking.png")
