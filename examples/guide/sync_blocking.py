"""Synchronous and blocking: ``apply``.

``apply`` hands one task to the pool and waits for its result: the result comes back from the
call (synchronous), and the caller does nothing else meanwhile (blocking), like watching a
download's progress bar until it is full. So four ``apply`` calls run one after the other, even
on a pool of three workers.

Run it with ``python examples/guide/sync_blocking.py``; it draws
``docs/guide/img/sync_blocking.png``. ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s downloads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def download(name: str) -> str:
    time.sleep(3 * TIME_SCALE)  # waiting on the network, say
    return f"{name} downloaded"


if __name__ == "__main__":
    with shoal.Pool(processes=3, trace=True) as pool:
        timeline = pool.timeline
        for i in range(4):
            # The main program's time inside apply is drawn as a region of the "main" row.
            with timeline.region(f"apply('file {i}')"):
                print(pool.apply(download, (f"file {i}",)))
        timeline.mark("all four done")
    timeline.title = "Pool(3): four apply calls, one after the other"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "sync_blocking.png")
