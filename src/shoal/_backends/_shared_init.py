"""Initializer arguments that ``multiprocessing`` shares only with a process it starts.

A ``multiprocessing.Queue``, ``Lock``, ``Value`` and the like refuse to be pickled except while a
process is being started ("Queue objects should only be shared between processes through
inheritance"). The stdlib's executors and Pool pass ``initargs`` that way, so handing each worker
a logging queue through ``initargs`` is common code. shoal starts its workers its own way, so
when its pickler is refused, :func:`init_frame` pickles the initializer's arguments the way
``multiprocessing`` does while starting a process, once for each worker:

* file descriptors (a queue's pipe) travel through ``multiprocessing``'s resource sharer
  (SCM_RIGHTS), as those of a ``Connection`` sent to another process do;
* semaphores are reopened by name (spawn, forkserver). Under fork the stdlib unlinks them at once
  and they live only in inherited memory, so they (and fork-only shared memory) stay in a
  registry that the zygote, forked after it is filled, and so every worker, inherits.
"""

from __future__ import annotations

import io
import itertools
import pickle
import weakref
from collections.abc import Callable
from typing import Any

from shoal._core._pickling import dumps, rebind_to_main

__all__ = ["flush_multiprocessing", "init_frame"]

#: Objects under fork that workers find in inherited memory, by token.
_registry: dict[int, Any] = {}
_tokens = itertools.count()


class _Starting:
    """Stands in for the ``Popen`` of a process being started while the arguments are pickled."""

    def __init__(self, share_fds: bool) -> None:
        self._share_fds = share_fds

    def duplicate_for_child(self, fd: int) -> int:
        return fd

    def DupFd(self, fd: int) -> Any:
        if not self._share_fds:
            return None  # a dry run: checks that everything can be pickled, shares nothing
        from multiprocessing import resource_sharer

        return resource_sharer.DupFd(fd)


def _inherited_only(obj: Any) -> bool:
    """Objects that a forked process can only inherit: a fork context's semaphores (unlinked
    at once) and its shared memory (an anonymous mapping)."""
    from multiprocessing import heap, synchronize

    return isinstance(obj, synchronize.SemLock) or (
        isinstance(obj, heap.Arena) and getattr(obj, "fd", None) == -1
    )


def _pickle_args(args: tuple[Any, ...], tokens: dict[int, int] | None, share_fds: bool) -> bytes:
    """Pickle ``args`` as ``multiprocessing`` does for a process it starts. With ``tokens``
    (fork), inherited-only objects are replaced by their registry token."""
    from multiprocessing import context, reduction

    class Pickler(reduction.ForkingPickler):
        def persistent_id(self, obj: Any) -> int | None:
            if tokens is None or not _inherited_only(obj):
                return None
            token = tokens.get(id(obj))
            if token is None:
                token = tokens[id(obj)] = next(_tokens)
                _registry[token] = obj
            return token

    buf = io.BytesIO()
    context.set_spawning_popen(_Starting(share_fds))  # type: ignore[arg-type]
    try:
        Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(args)
    finally:
        context.set_spawning_popen(None)
    return buf.getvalue()


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return _registry[pid]


class _SharedInit:
    """The initializer as the worker gets it: its arguments are unpickled when it is called,
    so a failure there is reported as the initializer's."""

    def __init__(self, initializer: Callable[..., object], blob: bytes) -> None:
        self.initializer = initializer
        self.blob = blob

    def __call__(self) -> None:
        args = _Unpickler(io.BytesIO(self.blob)).load()
        rebind_to_main(self.initializer)(*args)


def init_frame(init: tuple[Any, ...], start_method: str) -> Callable[[], bytes]:
    """The worker's first frame, ``I`` and its pickled settings, made afresh for each worker.

    Args:
        init: ``(initializer, initargs, ...)``, the settings ``serve()`` reads.
        start_method: the pool's; under fork, inherited-only objects are registered here, so
            call this before the zygote is forked.

    Raises:
        whatever ``multiprocessing`` raises for arguments it cannot share either (a fork
        context's lock given to a spawn pool), or the pickling error.
    """
    try:
        frame = b"I" + dumps(init)
    except Exception:
        initializer, initargs, *rest = init
        if initializer is None:
            raise
    else:
        return lambda: frame
    tokens: dict[int, int] | None = {} if start_method == "fork" else None
    _pickle_args(tuple(initargs), tokens, share_fds=False)  # raises now if it cannot work

    def make() -> bytes:
        blob = _pickle_args(tuple(initargs), tokens, share_fds=True)
        return b"I" + dumps((_SharedInit(initializer, blob), (), *rest))

    if tokens:
        weakref.finalize(make, _forget, list(tokens.values()))
    return make


def _forget(tokens: list[int]) -> None:
    for token in tokens:
        _registry.pop(token, None)


def flush_multiprocessing() -> None:
    """Flush what this process wrote to ``multiprocessing`` queues and run its finalizers, as a
    ``multiprocessing`` child does when it exits (a worker forked by a zygote ends with
    ``os._exit``, which would drop a queue's unflushed buffer)."""
    try:
        from multiprocessing import util

        util._exit_function()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - never let this keep a worker from ending
        pass
