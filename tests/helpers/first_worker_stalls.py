"""A ProcessPoolExecutor whose first worker never gets through its start (it blocks in an
at-fork hook: only the first fork of this process is armed), shut down at once. Prints what
happened, as JSON. Run as a script: the hook cannot be removed, so it must not live in the
test process."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

import shoal

armed = {"on": True}
stall_r, stall_w = os.pipe()  # never written: the first worker waits on it for ever


def _stall_if_armed() -> None:
    if armed["on"]:
        os.close(stall_w)  # so that the end of this script ends the stall too
        os.read(stall_r, 1)


os.register_at_fork(after_in_child=_stall_if_armed, after_in_parent=lambda: armed.update(on=False))

initializer = print if "--initializer" in sys.argv else None
ex = shoal.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"),
                               initializer=initializer)
handles = list(ex._backend.workers())  # under fork its first worker starts in the constructor
started = time.monotonic()
ex.shutdown(wait=True)
json.dump(
    {
        "shutdown_seconds": time.monotonic() - started,
        "exit_codes": [h.exitcode for h in handles],
        "lost": ex.statistics().workers_lost,
    },
    sys.stdout,
)
