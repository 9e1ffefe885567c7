"""Large buffers sent once, through shared memory (the process backend's helper).

The parent pickles functions and items with protocol 5, leaving buffers of ``OUT_OF_BAND`` bytes
or more out of the pickle (``_core._pickling.dumps(obj, buffers)``). Each such buffer is copied
once into a **segment**: an anonymous memfd of the pool's process, which has no name, so nothing
can be left behind in ``/dev/shm`` even if the parent is killed: the kernel frees it when its
last fd and mapping are gone. A frame names a segment by (serial, pid, fd, inode, size); the
worker opens ``/proc/<pid>/fd/<fd>`` (the pool's pid is in the descriptor: a zygote's worker's
parent is the zygote), checks the inode (an fd number may have been reused), maps it and passes
the mapping to ``pickle.loads(..., buffers=)``: a numpy array is rebuilt on the mapping itself.

The mapping is private and writable (copy-on-write), not read-only: a task that changes its
argument in place works as it does on a plain unpickled copy, and its change stays its own.

**Sent once.** Segments are cached by the identity of the object that exports the buffer and of
the call (a ``map``, an ``apply_async``, an executor's ``submit`` or ``map``), holding both, for
as long as a chunk of that call uses the segment. So a buffer bound in every chunk's function, or
given in many chunks' items, is copied once per call, and a function bound to it keeps the same
digest for the whole call (it is sent once per worker). A new call copies it afresh, so an array
changed between two calls is seen changed.

**Lifetime.** Chunks hold their segments (``chunk.wire``), and so does a map's call object while
it lives; when nothing holds a segment any more, its serial and fd go to
``SegmentStore.ended``, from which the manager tells the workers whose cached functions are
bound to it to drop them (a ``D`` frame, answered by ``d``). The pool's fd is closed once they
have (or are gone), on a thread of its own (:func:`close_later`): the last holder of a memfd
frees its pages, some 20 ms per 100 MB, and neither the manager, nor a worker about to exit (a
``shutdown(wait=True)`` waits for it), should be the one to pay.

**Fallback.** Each worker checks once, before it says it is ready, that it can open a probe
segment of the pool's; if it cannot (no ``/proc``, a non-dumpable parent, no ``memfd_create``),
large buffers travel in the pickle for that worker, and the pool stops making segments.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import pickle
import queue
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "ENV",
    "Segment",
    "SegmentStore",
    "close_later",
    "map_segments",
    "probe",
    "wait_closed",
]

#: The name memfds show in ``/proc/<pid>/fd`` and ``/proc/<pid>/maps`` (``/memfd:shoal-buffer``).
NAME = "shoal-buffer"
_PROBE_NAME = "shoal-probe"
#: ``SHOAL_SHARED_MEMORY=0`` sends large buffers in the pickle (read when a pool starts, and by
#: each worker as it starts).
ENV = "SHOAL_SHARED_MEMORY"
#: Bytes per write into a segment: Linux writes at most about 2 GiB in one call.
_WRITE_STEP = 1 << 30

Descriptor = tuple[int, int, int, int, int]  # serial, pid, fd, inode, size

_log = logging.getLogger("shoal")


class _Strong:
    """A strong reference that answers like a weak one (for a call that cannot be weakly
    referenced)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


class Segment:
    """One out-of-band buffer, copied into a memfd of this process."""

    __slots__ = ("__weakref__", "call", "desc", "exporter", "fd", "store")

    def __init__(
        self, store: SegmentStore, serial: int, raw: memoryview, exporter: Any, call: Any
    ) -> None:
        fd = os.memfd_create(NAME, os.MFD_CLOEXEC)
        try:
            size = raw.nbytes
            done = 0
            while done < size:  # os.pwrite copies straight into the memfd's pages
                done += os.pwrite(fd, raw[done : done + _WRITE_STEP], done)
            inode = os.fstat(fd).st_ino
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.store = store
        #: The buffer's object: its id keys the cache, so it must live as long.
        self.exporter = exporter
        #: The call (weakly, if it can be: the call holds its segments, see SegmentStore);
        #: checked on a hit, as a dead call's id may be a new call's.
        try:
            self.call: Callable[[], Any] = weakref.ref(call)
        except TypeError:
            self.call = _Strong(call)
        self.desc: Descriptor = (serial, store.pid, fd, inode, size)

    def __del__(self) -> None:
        try:
            self.store.segment_ended(self.desc[0], self.fd)
        except Exception:  # noqa: BLE001 - at interpreter exit the store may be gone already
            pass


_closing: queue.SimpleQueue[int | threading.Event] = queue.SimpleQueue()
_closer: threading.Thread | None = None
_closer_lock = threading.RLock()  # reentrant: a segment may end in a GC run inside it


def _close_forever() -> None:
    # Freeing pages is never urgent: the lowest priority (on Linux a thread has its own nice
    # value), so it does not slow the workers' exit that a shutdown(wait=True) waits for.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    while True:
        fd = _closing.get()
        if isinstance(fd, threading.Event):
            fd.set()
            continue
        try:
            os.close(fd)
        except OSError:
            pass


def close_later(fd: int | threading.Event) -> None:
    """Close a segment's fd on the closer thread (freeing its pages takes a while)."""
    global _closer
    with _closer_lock:
        if _closer is None or not _closer.is_alive():  # first use, or a forked child
            _closer = threading.Thread(target=_close_forever, name="shoal-segments", daemon=True)
            _closer.start()
    _closing.put(fd)


def wait_closed(timeout: float | None = None) -> bool:
    """Wait until every fd handed to :func:`close_later` so far is closed (for tests)."""
    done = threading.Event()
    close_later(done)
    return done.wait(timeout)


class SegmentStore:
    """The pool's segments, made by the threads that submit and dropped by the manager's.

    Args:
        wake: wakes the manager thread (called when a segment ends on another thread).
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self.pid = os.getpid()
        #: (serial, fd) of segments no longer held; the manager tells the workers.
        self.ended: deque[tuple[int, int]] = deque()
        #: The manager is gone: a segment that ends now is closed at once.
        self.finished = False
        self._wake = weakref.WeakMethod(wake) if hasattr(wake, "__self__") else lambda: wake
        self._cache: weakref.WeakValueDictionary[tuple[int, int, int], Segment] = (
            weakref.WeakValueDictionary()
        )
        #: The segments each live call of many chunks holds, by the call's id.
        self._held: dict[int, list[Segment]] = {}
        self._serials = itertools.count(1)
        # Reentrant: a segment may end (and take it) in a garbage collection run while it is held.
        self._lock = threading.RLock()
        self._close_probe: Callable[[], Any] = lambda: None
        #: The descriptor workers check they can open, or None: segments are not made.
        self.probe: Descriptor | None = None
        setting = os.environ.get(ENV, "1")
        if setting not in ("0", "1"):
            raise ValueError(
                f"{ENV} must be 0 (large buffers travel in the pickle) or 1 (once, through "
                f"shared memory: the default), not {setting!r}"
            )
        if setting == "0":
            _log.debug("shoal: %s=0: large buffers travel in the pickle", ENV)
            return
        try:
            fd = os.memfd_create(_PROBE_NAME, os.MFD_CLOEXEC)
        except (AttributeError, OSError) as exc:  # not Linux, or a kernel without memfd
            _log.debug("shoal: no memfd_create (%s); large buffers travel in the pickle", exc)
            return
        self._close_probe = weakref.finalize(self, os.close, fd)
        os.ftruncate(fd, 1)
        self.probe = (0, self.pid, fd, os.fstat(fd).st_ino, 1)

    @property
    def enabled(self) -> bool:
        return self.probe is not None

    def disable(self, why: str) -> None:
        """Make no more segments (a worker cannot open them); those made live on until their
        calls end, and workers that cannot map them get the in-band pickle instead."""
        if self.probe is not None:
            _log.debug("shoal: a worker cannot map shared memory (%s); large buffers travel in "
                       "the pickle", why)
            self.probe = None

    def segments(
        self, buffers: list[pickle.PickleBuffer], call: Any, hold: bool
    ) -> tuple[Segment, ...]:
        """The segments for ``buffers`` (from ``dumps(obj, buffers)``) in one call: made now,
        or the ones this call already made for the same buffers.

        Chunks hold their segments. With ``hold`` (a call of many chunks: a map), the call
        object holds them too, for as long as it lives: one chunk may be done before the
        next is even submitted, and the buffer must not be copied again for it."""
        out = []
        for pb in buffers:
            raw = pb.raw()
            exporter = memoryview(pb).obj
            key = (id(call), id(exporter), raw.nbytes)
            seg = self._cache.get(key)
            if seg is None or seg.call() is not call:
                # Copied without the lock held: the manager thread (a retry) never waits for
                # another thread's copy. Two threads copying the same buffer at once (rare)
                # both succeed; the first one stored is kept.
                made = Segment(self, next(self._serials), raw, exporter, call)
                with self._lock:
                    seg = self._cache.get(key)
                    if seg is None or seg.call() is not call:
                        seg = self._cache[key] = made
                        if hold:
                            self._hold(call, seg)
            out.append(seg)
        return tuple(out)

    def _hold(self, call: Any, seg: Segment) -> None:
        held = self._held.get(id(call))
        if held is None:
            try:
                # Runs as the call object is freed, before its id can be reused.
                weakref.finalize(call, self._held.pop, id(call), None)
            except TypeError:  # it cannot be weakly referenced: its chunks alone hold these
                return
            held = self._held[id(call)] = []
        held.append(seg)

    def segment_ended(self, serial: int, fd: int) -> None:
        with self._lock:
            if not self.finished:
                self.ended.append((serial, fd))
                fd = -1
        if fd >= 0:
            close_later(fd)
            return
        wake = self._wake()
        if wake is not None:
            wake()

    def close(self) -> None:
        """The manager is ending: close what has ended, and from now on close at once."""
        with self._lock:
            self.finished = True
            while self.ended:
                close_later(self.ended.popleft()[1])
        self._close_probe()
        self.probe = None


# ---- in the worker ---------------------------------------------------------------------------


def _map(desc: Descriptor) -> memoryview:
    """Map a segment of the pool's (private, copy-on-write); OSError if it cannot be."""
    _serial, pid, fd, inode, size = desc
    own = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(own)
        if st.st_ino != inode or st.st_size != size:
            raise OSError(
                f"shared segment {desc} of process {pid} is gone (fd {fd} is another file now)"
            )
        extra: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
        mapped = mmap.mmap(
            own, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE, **extra
        )
    finally:
        os.close(own)  # the mapping keeps the memory; before 3.13 mmap keeps a dup of the fd
    return memoryview(mapped)


def probe(desc: Descriptor | None) -> str | None:
    """None if this process can map the pool's segments, else why not."""
    if desc is None:
        return "the pool makes no segments"
    if os.environ.get(ENV) == "0":
        return f"turned off in the worker ({ENV}=0)"
    try:
        _map(desc).release()
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def map_segments(table: list[Descriptor]) -> list[memoryview]:
    """The buffers for ``pickle.loads(..., buffers=)``: each segment mapped afresh for this
    frame (once, if it is listed twice), never shared with another chunk's items, so a task
    that changes its argument in place cannot change what the next chunk sees. The mapping
    lives as long as what was built on it (an array, a cached function)."""
    mapped: dict[int, memoryview] = {}
    out = []
    for desc in table:
        view = mapped.get(desc[0])
        if view is None:
            view = mapped[desc[0]] = _map(desc)
        out.append(view)
    return out
