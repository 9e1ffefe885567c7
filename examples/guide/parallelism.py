"""Concurrency vs parallelism: the same CPU-bound tasks on threads, then on processes.

Threads are concurrent: they take turns, and in CPython the GIL lets only one of them run Python
code at a time, so CPU-bound work on two threads takes as long as doing it in turn. Processes run
in parallel: each has its own interpreter, and two of them use two cores at once.

Run it with ``python examples/guide/parallelism.py``; it prints a text Gantt chart of each pool
and draws both into ``docs/guide/img/parallelism.png`` (``pip install 'shoal[plot]'``).
``SHOAL_TIME_SCALE`` scales the work (the tutorial's 3 s tasks; 0.1: 0.3 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import shoal
from shoal.observe import Timeline

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def burn(cpu_seconds: float) -> float:
    """Compute until this thread has used ``cpu_seconds`` of CPU time (not wall time: a thread
    waiting for the GIL uses none, so it needs longer by the clock)."""
    began = time.thread_time()
    while time.thread_time() - began < cpu_seconds:
        sum(i * i for i in range(2000))
    return time.thread_time() - began


if __name__ == "__main__":
    cpu = 3 * TIME_SCALE / 2
    timelines = []
    for name, cls in (("threads", shoal.ThreadPool), ("processes", shoal.Pool)):
        with cls(2, trace=True) as pool:
            began = time.monotonic()
            pool.map(burn, [cpu] * 4, chunksize=1)
            took = time.monotonic() - began
            timeline = pool.timeline
        print(f"{name}: 4 tasks of {cpu:.2f} s of CPU each took {took:.2f} s")
        print(timeline.text_gantt(width=78))
        timelines.append(timeline)
    both = Timeline.merge(*timelines, title="4 CPU-bound tasks on ThreadPool(2), then Pool(2)")
    both.to_png(IMG / "parallelism.png")
