"""Tutorial example 3: the same pool with the blocking ``apply``.

``apply`` sends a task and waits for its result before it returns, so the four tasks run one
after another (never two at a time, although there are three workers), and the main process
prints its "Mark" line only after the last one has ended. Four sleeps in a row: 12 s at the
tutorial's pace.

Run it with ``python examples/tutorial_3_apply_blocking.py``; ``SHOAL_TIME_SCALE=0.1`` shortens
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


def func(msg: str) -> None:
    say("msg:", msg)
    time.sleep(3 * TIME_SCALE)
    say("end:", msg)


if __name__ == "__main__":
    pool = shoal.Pool(processes=3)
    for i in range(4):
        msg = f"hello {i}"
        pool.apply(func, (msg,))  # blocks until this task has ended
    say("Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~")
    pool.close()
    pool.join()
    say("Sub-process(es) done.")
