"""Synchronous and non-blocking: submit, then glance at ``ready()`` between other work.

``apply_async`` returns at once, so the caller keeps working (non-blocking). But nobody tells it
when the task is done: it has to ask (synchronous), like glancing at the progress bar now and
then. ``ready()`` is the glance; once it says True, ``get()`` returns without waiting.

Run it with ``python examples/guide/sync_nonblocking.py``; it draws
``docs/guide/img/sync_nonblocking.png``. ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def download(name: str) -> str:
    time.sleep(2 * 3 * TIME_SCALE)  # a big file: two of the tutorial's sleeps
    return f"{name} downloaded"


def other_work() -> None:
    time.sleep(3 * TIME_SCALE / 4)  # stands for a slice of the main program's own work


if __name__ == "__main__":
    with shoal.Pool(processes=2, trace=True) as pool:
        timeline = pool.timeline
        result = pool.apply_async(download, ("big file",))
        timeline.mark("apply_async returned")
        glances = 0
        while not result.ready():  # the glance at the progress bar
            with timeline.region("other work"):
                other_work()
            glances += 1
        timeline.mark("ready() is True")
        print(f"glanced {glances} times; then get() gave {result.get(timeout=0)!r}")
    timeline.title = "apply_async, then ready() between slices of other work"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "sync_nonblocking.png")
