"""Tutorial example 1: ``apply_async`` on a pool of 3 workers, 4 tasks, then ``close``/``join``.

``apply_async`` hands a task to the pool and returns at once, so the main process prints its
"Mark" line while the tasks are still running. Three workers take the first three tasks together;
the fourth waits until one of them is free, so the whole run takes two rounds of the sleep.
``close()`` says no more tasks will come and ``join()`` waits for the workers to finish.

Run it with ``python examples/tutorial_1_apply_async.py``. The tutorial's tasks sleep 3 s;
``SHOAL_TIME_SCALE=0.1`` makes that 0.3 s. Every line starts with the seconds since the start.
"""

from __future__ import annotations

import os
import sys
import time

import shoal

#: Multiplies the tutorial's sleeps (1.0: the real 3 s).
TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "1.0"))
# One zero for the main process and every worker. The monotonic clock is shared by all processes
# of the machine; a worker that re-imports this file (spawn) finds the zero in its environment.
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
        # Returns at once; the pool keeps 3 workers busy and gives a worker a new task
        # as soon as it is done with the last one.
        pool.apply_async(func, (msg,))
    say("Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~")
    pool.close()  # no more tasks; must come before join()
    pool.join()  # wait until every task has run and the workers have exited
    say("Sub-process(es) done.")
