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

**Lifetime.** Chunks hold their segments (``chunk.wire``); when the last chunk of a call that
used a segment is done, the segment is garbage: its fd is closed, and its serial goes to
``SegmentStore.ended``, from which the manager tells the workers that mapped it (a ``D`` frame)
to drop it and the functions bound to it, so their mappings go too.

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
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Segment", "SegmentStore", "WorkerMaps", "probe"]

#: The name memfds show in ``/proc/<pid>/fd`` and ``/proc/<pid>/maps`` (``/memfd:shoal-buffer``).
NAME = "shoal-buffer"
_PROBE_NAME = "shoal-probe"
#: Bytes per write into a segment: Linux writes at most about 2 GiB in one call.
_WRITE_STEP = 1 << 30

Descriptor = tuple[int, int, int, int, int]  # serial, pid, fd, inode, size

_log = logging.getLogger("shoal")


class Segment:
    """One out-of-band buffer, copied into a memfd of this process."""

    __slots__ = ("__weakref__", "desc", "fd", "keep", "store")

    def __init__(self, store: SegmentStore, serial: int, raw: memoryview, keep: Any) -> None:
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
        #: The call and the buffer's exporter: their ids key the cache, so they must live.
        self.keep = keep
        self.desc: Descriptor = (serial, store.pid, fd, inode, size)

    def __del__(self) -> None:
        try:
            os.close(self.fd)
            self.store.segment_ended(self.desc[0])
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone already
            pass


class SegmentStore:
    """The pool's segments, made by the threads that submit and dropped by the manager's.

    Args:
        wake: wakes the manager thread (called when a segment ends on another thread).
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self.pid = os.getpid()
        #: Serials of segments whose calls are over; the manager tells the workers.
        self.ended: deque[int] = deque()
        self._wake = weakref.WeakMethod(wake) if hasattr(wake, "__self__") else lambda: wake
        self._cache: weakref.WeakValueDictionary[tuple[int, int, int], Segment] = (
            weakref.WeakValueDictionary()
        )
        self._serials = itertools.count(1)
        self._lock = threading.Lock()
        self._probe_fd = -1
        #: The descriptor workers check they can open, or None: segments are not made.
        self.probe: Descriptor | None = None
        try:
            fd = os.memfd_create(_PROBE_NAME, os.MFD_CLOEXEC)
        except (AttributeError, OSError) as exc:  # not Linux, or a kernel without memfd
            _log.debug("shoal: no memfd_create (%s); large buffers travel in the pickle", exc)
            return
        os.ftruncate(fd, 1)
        self._probe_fd = fd
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

    def segments(self, buffers: list[pickle.PickleBuffer], call: Any) -> tuple[Segment, ...]:
        """The segments for ``buffers`` (from ``dumps(obj, buffers)``) in one call: made now,
        or the ones this call already made for the same buffers."""
        out = []
        for pb in buffers:
            raw = pb.raw()
            exporter = memoryview(pb).obj
            key = (id(call), id(exporter), raw.nbytes)
            seg = self._cache.get(key)
            if seg is None:
                # Copied without the lock held: the manager thread (a retry) never waits for
                # another thread's copy. Two threads copying the same buffer at once (rare)
                # both succeed; the first one stored is kept.
                made = Segment(self, next(self._serials), raw, (call, exporter))
                with self._lock:
                    seg = self._cache.get(key)
                    if seg is None:
                        seg = self._cache[key] = made
            out.append(seg)
        return tuple(out)

    def segment_ended(self, serial: int) -> None:
        self.ended.append(serial)
        wake = self._wake()
        if wake is not None:
            wake()

    def close(self) -> None:
        if self._probe_fd >= 0:
            os.close(self._probe_fd)
            self._probe_fd = -1
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
    try:
        _map(desc).release()
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class WorkerMaps:
    """The segments a worker has mapped, by serial, until the parent says their call ended."""

    __slots__ = ("_maps",)

    def __init__(self) -> None:
        self._maps: dict[int, memoryview] = {}

    def buffers(self, table: list[Descriptor]) -> list[memoryview]:
        maps = self._maps
        out = []
        for desc in table:
            view = maps.get(desc[0])
            if view is None:
                view = maps[desc[0]] = _map(desc)
            out.append(view)
        return out

    def drop(self, serials: set[int]) -> None:
        # Only forgotten, never released or closed: arrays built on a mapping may still be
        # alive (a task kept one); the mapping goes with the last of them.
        for serial in serials:
            self._maps.pop(serial, None)
