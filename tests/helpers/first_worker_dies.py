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

if "--late-zygote-report" in sys.argv:
    # The race this flag forces: the manager reaps the dead first worker, and the next turn
    # asks the zygote for its replacement, before a select has shown it the zygote's closed
    # socket. Its event loop ignores that socket for a while, as a loaded machine's may.
    from shoal._backends import _process

    _reports = _process.ProcessBackend._zygote_reports
    _ignored = {"n": 0}

    def _late_reports(self: object, fd: int) -> None:
        if sys._getframe(1).f_code.co_name == "_run" and _ignored["n"] < 200:
            _ignored["n"] += 1
            return
        _reports(self, fd)  # type: ignore[arg-type]

    _process.ProcessBackend._zygote_reports = _late_reports  # type: ignore[method-assign]

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
