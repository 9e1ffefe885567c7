"""Shared memory: a ``Manager`` list every worker appends to.

Workers are separate processes with their own memory: a plain list passed to a task is pickled,
so each task appends to its own copy and the caller's list stays empty. A
``multiprocessing.Manager`` keeps one list in a process of its own and hands each task a proxy;
every append travels to it, so the caller sees them all (the tutorial's example 2.3).

Run it with ``python examples/guide/shared_memory.py``; it draws
``docs/guide/img/shared_memory.png``.
"""

from __future__ import annotations

import os
from collections import Counter
from multiprocessing import Manager
from pathlib import Path
from typing import Any

import shoal

IMG = Path(os.environ.get("SHOAL_GUIDE_IMG_DIR", Path(__file__).parents[2] / "docs/guide/img"))


def append_pair(i: int, shared: Any) -> int:
    shared.append([i, i + 1])
    return os.getpid()


if __name__ == "__main__":
    with Manager() as manager:
        shared = manager.list()
        plain: list[Any] = []
        with shoal.Pool(processes=4, trace=True) as pool:
            results = [pool.apply_async(append_pair, (i, shared)) for i in range(100)]
            pids = Counter(r.get() for r in results)
            pool.starmap(append_pair, [(i, plain) for i in range(10)])
            timeline = pool.timeline
        entries = list(shared)
    print(f"the Manager list has {len(entries)} entries: {entries[:3]} ...")
    print(f"appends per worker: {sorted(pids.values(), reverse=True)}")
    print(f"the plain list has {len(plain)} entries")
    timeline.title = "Pool(4): 100 tasks append to a Manager list, 10 to a plain one"
    print(timeline.text_gantt(width=78))
    timeline.to_png(IMG / "shared_memory.png")
