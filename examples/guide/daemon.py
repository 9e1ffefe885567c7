"""Daemon and non-daemon workers: a task that starts a pool of its own.

A daemon process ends when its parent ends, and may not start processes of its own.
``multiprocessing.Pool``'s workers are daemons, so a task that starts a pool fails there with
"daemonic processes are not allowed to have children". shoal's workers are not daemons (shoal
ends them itself when the pool, or the program that owns it, ends), so a task may run a pool.

Run it with ``python examples/guide/daemon.py``; it draws ``docs/guide/img/daemon.png``, the
inner pools' workers as "outer > inner". ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def square(x: int) -> int:
    time.sleep(3 * TIME_SCALE / 2)
    return x * x


def inner_pool(n: int) -> tuple[int, bool, list[int], list[Any]]:
    """Runs in a worker: start a pool of its own; return what it saw, and its inner timeline."""
    with shoal.Pool(2, trace=True) as pool:
        squares = pool.map(square, range(n), chunksize=1)
        events = list(pool.timeline.events)
    return os.getpid(), multiprocessing.current_process().daemon, squares, events


if __name__ == "__main__":
    with shoal.Pool(2, trace=True) as pool:
        outcomes = pool.map(inner_pool, [3, 3], chunksize=1)
        timeline = pool.timeline
    outer = {e.pid: e.worker for e in timeline.events}
    for pid, daemonic, squares, events in outcomes:
        print(f"worker {outer[pid]}: daemon={daemonic}, its own pool returned {squares}")
        timeline.extend(
            dataclasses.replace(e, worker=f"{outer[pid]} > {e.worker.replace('ShoalPool', '')}")
            for e in events
        )
    with multiprocessing.Pool(1) as mp_pool:
        try:
            mp_pool.apply(inner_pool, (1,))
        except AssertionError as exc:
            print(f"multiprocessing.Pool: AssertionError: {exc}")
    timeline.title = "Pool(2) whose tasks each run a Pool(2)"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "daemon.png")
