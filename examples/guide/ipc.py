"""Inter-process communication: a queue between two running tasks.

Processes share no memory, so they talk through the operating system: pipes, sockets, and the
queues built on them. A ``Manager``'s ``Queue`` can be passed to pool tasks (a plain
``multiprocessing.Queue`` only to processes that inherit it): here one task puts messages on it
while another takes them off, both running at once on two workers.

Run it with ``python examples/guide/ipc.py``; it draws ``docs/guide/img/ipc.png``, with the
moments of each put and get on rows of their own. ``SHOAL_TIME_SCALE`` scales the tutorial's 3 s.
"""

from __future__ import annotations

import os
import time
from multiprocessing import Manager
from pathlib import Path
from typing import Any

import shoal

TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def produce(queue: Any, n: int) -> list[tuple[str, float]]:
    sent = []
    for i in range(n):
        time.sleep(3 * TIME_SCALE / 3)
        sent.append((f"message {i}", time.monotonic()))
        queue.put(f"message {i}")
    queue.put(None)  # no more
    return sent


def consume(queue: Any) -> list[tuple[str, float]]:
    got = []
    # A ceiling on each wait: a lost producer ends this task with queue.Empty, not a hang.
    while (message := queue.get(timeout=60)) is not None:
        got.append((message, time.monotonic()))
    return got


if __name__ == "__main__":
    with Manager() as manager:
        queue = manager.Queue()
        with shoal.Pool(processes=2, trace=True) as pool:
            producer = pool.apply_async(produce, (queue, 3))
            consumer = pool.apply_async(consume, (queue,))
            sent, got = producer.get(), consumer.get()
            timeline = pool.timeline
    print(f"sent {[m for m, _ in sent]}, got {[m for m, _ in got]}")
    for message, when in sent:
        timeline.mark(f"put {message}", row="queue.put", at=when)
    for message, when in got:
        timeline.mark(f"got {message}", row="queue.get", at=when)
    timeline.title = "a producer and a consumer, on two workers, talk through a queue"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "ipc.png")
