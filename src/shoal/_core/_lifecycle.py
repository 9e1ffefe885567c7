"""What happens to live pools when the interpreter exits.

Workers are not daemons (a task may run its own pool), so ``multiprocessing``'s own exit hook
would wait for them for ever. One hook of ours, registered after ``multiprocessing.util`` has
registered its own (so it runs first), ends every live pool: Pool-style ones are terminated, as
the stdlib's finalizer does; executor-style ones finish their queued work, as the stdlib's do.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

__all__ = ["exiting", "track"]

_live: dict[int, tuple[weakref.ref[Any], bool]] = {}
_lock = threading.Lock()
_registered = False
_exiting = False


def exiting() -> bool:
    """True once the interpreter has begun to exit (executors then refuse new work)."""
    return _exiting


def track(backend: Any, *, drain: bool) -> None:
    """Have ``backend`` ended at exit: drained (executors) or terminated (pools)."""
    global _registered
    import multiprocessing.util  # noqa: F401 - its exit hook must be registered before ours

    key = id(backend)
    def forget(_ref: weakref.ref[Any], key: int = key) -> None:
        _live.pop(key, None)

    ref = weakref.ref(backend, forget)
    with _lock:
        _live[key] = (ref, drain)
        if not _registered:
            atexit.register(_at_exit)
            _registered = True


def _at_exit() -> None:
    global _exiting
    _exiting = True
    with _lock:
        entries = list(_live.values())
    backends = []
    for ref, drain in entries:
        backend = ref()
        if backend is None:
            continue
        if drain:
            backend.shutdown(wait=False, cancel_pending=False)
        else:
            backend.terminate()
        backends.append(backend)
    for backend in backends:
        backend.join()
