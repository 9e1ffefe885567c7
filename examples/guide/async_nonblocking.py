"""Asynchronous and non-blocking: a callback, the download that goes "ding".

``apply_async(..., callback=ding)``: when the task is done the pool calls ``ding`` with its value
(asynchronous), and the caller never waits or asks (non-blocking): it does its own work until
the ding. The callback runs in the caller's process, on the pool's callback thread, so it should
be quick (hand the value over, set an event) and must not wait for the pool.

Run it with ``python examples/guide/async_nonblocking.py``; it draws
``docs/guide/img/async_nonblocking.png``. ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def download(name: str) -> str:
    time.sleep(2 * 3 * TIME_SCALE)
    return f"{name} downloaded"


if __name__ == "__main__":
    with shoal.Pool(processes=2, trace=True) as pool:
        timeline = pool.timeline

        def ding(value: str) -> None:
            timeline.mark("ding!", row="callback")
            print(f"ding! {value} (on thread {threading.current_thread().name})", flush=True)

        pool.apply_async(download, ("big file",), callback=ding)
        timeline.mark("apply_async returned")
        for piece in range(8):  # the main program's own work; it never asks about the download
            with timeline.region(f"work {piece}"):
                time.sleep(3 * TIME_SCALE / 3)
        print("my own work is done")
        pool.close()
        pool.join()
    timeline.title = "apply_async with a callback: the ding comes during other work"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "async_nonblocking.png")
