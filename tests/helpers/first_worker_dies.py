"""A Pool whose first worker dies at once, before it can fork the pool's zygote (it kills itself
in an at-fork hook: only the first fork of this process is armed). Prints what happened, as
JSON. Run as a script: the hook cannot be removed, so it must not live in the test process."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import shoal
from helpers import faults

armed = {"on": True}


def _die_if_armed() -> None:
    if armed["on"]:
        os.kill(os.getpid(), signal.SIGKILL)


os.register_at_fork(after_in_child=_die_if_armed, after_in_parent=lambda: armed.update(on=False))

started = time.monotonic()
pool = shoal.Pool(2, context="fork")
out = pool.map(faults.square, range(40), chunksize=1)
pids = sorted(set(pool.map(faults.getpid, range(40), chunksize=1)))
stand_in = pool._backend._launcher._popen is not None
pool.close()
pool.join()
json.dump(
    {"results": out, "pids": pids, "stand_in": stand_in, "seconds": time.monotonic() - started},
    sys.stdout,
)
