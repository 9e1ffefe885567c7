"""The process backend's wire format: length-prefixed frames on plain pipes.

A frame is a 4-byte big-endian length and a payload; a payload of 4 GiB or more has the length
0xFFFFFFFF and an 8-byte length after it. The payload's first byte says what it is.

Parent to worker:
  ``I`` + pickled (initializer, initargs, max_tasks, init_logger): the first frame, always.
  ``F`` + 16-byte digest + pickled function: define a function (sent once per worker).
  ``G`` + 16-byte digest + segment table + pickled function: the same for a function whose large
  buffers travel out of band, in shared memory (see ``_segments``).
  ``C`` + chunk id (8) + digest (16) + mode (1) + item count (4) + pickled items: run a chunk.
  With the SHARED flag in the mode byte a segment table comes before the pickled items.
  ``D`` + segment table: these segments' calls are over; drop the functions bound to them.
  ``Q``: finish and exit.
Worker to parent:
  ``R`` + chunk id (8) + start, end (8 + 8) + pickled list of outcomes: a chunk's results.
  ``T``: the same for a traced chunk; the payload is ``(outcomes, item_times)``, where
  item_times is a flat list of start/end ns per item, or None when the items are too short to
  time one by one (under about 100 us: the chunk's span stands for them).
  ``Y`` + ``1`` if the worker can map the pool's shared memory (else nothing): ready, after the
  initializer ran (only then does the worker get chunks).
  ``M`` + pickled bytes grown: the memory guard retires this worker after this chunk.
  ``B`` + pickled (message, traceback): the initializer failed; the worker exits.
  ``d`` + segment table: the ``D`` of these segments was done (their memory may be freed).

The ``C`` frame's mode byte carries flags: 0x80 (TIMED) asks for each item's start time in the
worker's slot (task_timeout); 0x40 (TRACED) asks for ``T`` frames; 0x20 (SHARED) says a segment
table precedes the pickled items.

A segment table is a count (4) and one ``SEGMENT`` per out-of-band buffer, in the order
``pickle.loads(..., buffers=)`` takes them: serial (8), the pool's pid (4), its fd of the memfd
(4), the memfd's inode (8) and size (8).
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "CHUNK_HEAD",
    "RESULT_HEAD",
    "SEGMENT",
    "FrameReader",
    "frame",
    "frame_header",
    "pack_segments",
    "read_frame",
    "unpack_segments",
    "write_all",
]

_LEN = struct.Struct("!I")
_BIG = struct.Struct("!Q")
_BIG_MARK = 0xFFFFFFFF
#: ``C`` frames: chunk id, function digest, mode, item count.
CHUNK_HEAD = struct.Struct("!Q16sBI")
#: ``R``/``T`` frames: chunk id, when the chunk's first item started and its last ended
#: (``time.monotonic_ns``: the same clock in every process).
RESULT_HEAD = struct.Struct("!Qqq")
#: One shared-memory segment: serial, owner pid, owner's fd, inode, size.
SEGMENT = struct.Struct("!QiiQQ")
_COUNT = struct.Struct("!I")


def pack_segments(segments: list[tuple[int, int, int, int, int]]) -> bytes:
    """A segment table: a count, then each segment's ``SEGMENT`` fields."""
    return _COUNT.pack(len(segments)) + b"".join(SEGMENT.pack(*s) for s in segments)


def unpack_segments(
    data: bytes | memoryview, offset: int
) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """The table at ``offset``, and the offset just past it."""
    (n,) = _COUNT.unpack_from(data, offset)
    offset += _COUNT.size
    out = []
    for _ in range(n):
        out.append(SEGMENT.unpack_from(data, offset))
        offset += SEGMENT.size
    return out, offset


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """The header for a payload (send ``header`` then ``payload``)."""
    return frame_header(len(payload))


def frame_header(n: int) -> bytes:
    """The header for a payload of ``n`` bytes."""
    if n < _BIG_MARK:
        return _LEN.pack(n)
    return _LEN.pack(_BIG_MARK) + _BIG.pack(n)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte to a blocking fd (the worker's side)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes | None:
    if n == 0:
        return b""
    first = os.read(fd, n)
    if len(first) == n:
        return first
    if not first:
        return None
    buf = bytearray(first)
    while len(buf) < n:
        more = os.read(fd, n - len(buf))
        if not more:
            return None
        buf += more
    return bytes(buf)


def read_frame(fd: int) -> bytes | None:
    """Read one frame from a blocking fd; None at end of file (the other side is gone)."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n == _BIG_MARK:
        big = _read_exact(fd, 8)
        if big is None:
            return None
        (n,) = _BIG.unpack(big)
    return _read_exact(fd, n)


class FrameReader:
    """Cuts frames out of what a non-blocking fd delivers (the parent's side)."""

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while True:
            if self._need < 0:
                if len(buf) < 4:
                    break
                (n,) = _LEN.unpack_from(buf)
                if n == _BIG_MARK:
                    if len(buf) < 12:
                        break
                    (n,) = _BIG.unpack_from(buf, 4)
                    del buf[:12]
                else:
                    del buf[:4]
                self._need = n
            if len(buf) < self._need:
                break
            n = self._need
            frames.append(bytes(buf[:n]))
            del buf[:n]
            self._need = -1
        return frames

    def wants(self) -> int:
        """How many more bytes the frame being read needs (a read size hint)."""
        return max(self._need - len(self._buf), 0)
