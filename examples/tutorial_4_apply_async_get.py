"""Tutorial example 4: non-blocking ``apply_async``, results collected with ``get()``.

Each ``apply_async`` returns an ``AsyncResult`` at once; the three tasks run side by side on a
pool of four workers. After ``close()`` and ``join()`` every task has ended, so each ``get()``
returns its task's value immediately, and the values come out in the order the tasks were
submitted, whichever task finished first.

Run it with ``python examples/tutorial_4_apply_async_get.py``; ``SHOAL_TIME_SCALE=0.1`` shortens
the sleeps tenfold.
"""

from __future__ import annotations

import os
import sys
import time

import shoal

#: Multiplies the tutorial's sleeps (1.0: the real 3 s).
TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
START = float(os.environ.setdefault("SHOAL_EXAMPLE_START", repr(time.monotonic())))


def say(*parts: object) -> None:
    """Print one line, stamped with the seconds since START, in a single write, so lines from
    several processes never run into each other."""
    line = " ".join([f"[{time.monotonic() - START:7.3f}s]", *map(str, parts)])
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def func(msg: str) -> str:
    say("msg:", msg)
    time.sleep(3 * TIME_SCALE)
    say("end:", msg)
    return "done " + msg


if __name__ == "__main__":
    pool = shoal.Pool(processes=4)
    results = []
    for i in range(3):
        msg = f"hello {i}"
        results.append(pool.apply_async(func, (msg,)))  # an AsyncResult, at once
    pool.close()
    pool.join()
    for res in results:
        say(":::", res.get())
    say("Sub-process(es) done.")
