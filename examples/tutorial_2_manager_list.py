"""Tutorial example 2: a list shared between the main process and the workers, via a Manager.

Workers are separate processes: an ordinary list passed to a task is copied, and whatever the
task appends to the copy is lost. A ``multiprocessing.Manager`` keeps the real list in a server
process and hands out proxies; each of the 100 tasks appends ``[i, i + 1]`` through its proxy, and
after ``join()`` the main process sees all 100 entries (in the order the tasks ran).

Run it with ``python examples/tutorial_2_manager_list.py``.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import Manager
from typing import Any

import shoal

# The tutorial's version of this example does not sleep, so SHOAL_TIME_SCALE has no effect here.
START = float(os.environ.setdefault("SHOAL_EXAMPLE_START", repr(time.monotonic())))


def say(*parts: object) -> None:
    """Print one line, stamped with the seconds since START, in a single write, so lines from
    several processes never run into each other."""
    line = " ".join([f"[{time.monotonic() - START:7.3f}s]", *map(str, parts)])
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def func(i: int, shared: Any) -> None:
    shared.append([i, i + 1])
    say(f"{i} series")


if __name__ == "__main__":
    say("CPUs this process may use:", shoal.cpu_count())
    with Manager() as manager:
        pool = shoal.Pool(processes=4)
        shared = manager.list([])
        for x in range(100):
            pool.apply_async(func, (x, shared))
        pool.close()
        pool.join()
        entries = list(shared)  # one round trip to the manager for a plain copy
    say(entries)
    say(f"{len(entries)} entries")
    say("done")
