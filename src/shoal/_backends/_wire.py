"""The process backend's wire format: length-prefixed frames on plain pipes.

A frame is a 4-byte big-endian length and a payload; a payload of 4 GiB or more has the length
0xFFFFFFFF and an 8-byte length after it. The payload's first byte says what it is.

Parent to worker:
  ``I`` + pickled (initializer, initargs, max_tasks, init_logger, memory limit, log level,
  native threads, shared-memory probe, worker_exit): the first frame, always.
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
  ``L`` + pickled log record state: a record made in the worker, for the parent's handlers.
  ``P`` + plainly pickled tuple: progress of a map-like call a task runs (``_core/_relay.py``).
  ``d`` + segment table: the ``D`` of these segments was done (their memory may be freed).
  ``X`` + pickled (ok, value): what ``worker_exit`` returned (ok) or a Failure (it raised, or
  its value could not be pickled); the last frame of a worker that retires in an orderly way
  (told to quit, max_tasks, memory guard), sent only when the pool has a ``worker_exit``.

The ``C`` frame's mode byte carries flags: 0x80 (TIMED) asks for each item's start time in the
worker's slot (task_timeout); 0x40 (TRACED) asks for ``T`` frames; 0x20 (SHARED) says a segment
table precedes the pickled items.

A segment table is a count (4) and one ``SEGMENT`` per out-of-band buffer, in the order
``pickle.loads(..., buffers=)`` takes them: serial (8), the pool's pid (4), its fd of the memfd
(4), the memfd's inode (8) and size (8).

Large results are copied only by the kernel, into the pipe and out of it (pickle protocol 5
out-of-band buffers). Any frame may be wrapped in a ``V`` envelope carrying buffers after it::

  ``V`` + count (4) + count x length (8 each) + the inner payload + buffer 1 + ... + buffer count

The frame's length covers all of it; the inner payload's length is what the rest leaves over.
The worker writes the buffers straight from its objects' memory with ``os.writev`` after the
small header and pickle. The parent reads a frame of 64 KiB or more in place: one bytearray of
exactly the right size per part (inner payload, then each buffer), filled by ``os.readv``, so
a numpy array comes back backed by its own (writable) bytearray.
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "CHUNK_HEAD",
    "IN_PLACE",
    "RESULT_HEAD",
    "SEGMENT",
    "Frame",
    "FrameReader",
    "envelope",
    "frame",
    "frame_header",
    "pack_segments",
    "read_frame",
    "unpack_segments",
    "write_all",
    "write_parts",
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
    data: bytes | bytearray | memoryview, offset: int
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


#: Frames of at least this many bytes are read in place (a bytearray of their exact size, filled
#: by ``os.readv``); smaller ones are cut out of 64 KiB reads, many per read when results are
#: small. Also the size from which a worker sends a result's buffers out of band.
IN_PLACE = 1 << 16
_READ = 1 << 16
_V = ord("V")
_COUNT = struct.Struct("!I")
try:
    _IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _IOV_MAX = 16
#: At most this many reads of one frame in a row, so a worker writing a huge frame as fast as we
#: read it does not keep the manager from its other pipes and timers.
_IN_PLACE_READS = 8


def envelope(inner: int, lengths: list[int]) -> bytes:
    """Frame header and ``V`` table for an inner payload of ``inner`` bytes followed by buffers
    of these ``lengths`` (send the inner payload, then the buffers)."""
    count = len(lengths)
    table = b"V" + _COUNT.pack(count) + struct.pack(f"!{count}Q", *lengths)
    return frame_header(len(table) + inner + sum(lengths)) + table


def write_parts(fd: int, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write these byte buffers, in order, to a blocking fd with ``os.writev``: no joined copy.

    Each must be one-dimensional bytes (``len`` is its size in bytes).
    """
    todo = [p for p in parts if len(p)]
    while todo:
        n = os.writev(fd, todo[:_IOV_MAX])
        done = 0
        while done < len(todo) and n >= len(todo[done]):
            n -= len(todo[done])
            done += 1
        del todo[:done]
        if n:
            todo[0] = memoryview(todo[0])[n:]


#: What :meth:`FrameReader.read` returns per frame: the payload and its out-of-band buffers.
Frame = tuple[bytes | bytearray, tuple[bytearray, ...]]


class FrameReader:
    """Cuts frames out of what a non-blocking fd delivers (the parent's side).

    Small frames are cut out of 64 KiB reads. A frame of ``IN_PLACE`` bytes or more gets one
    bytearray per part of exactly its size (the payload; for a ``V`` frame the inner payload and
    each buffer), which ``os.readv`` fills: the kernel's copy is the only one.
    """

    __slots__ = ("_buf", "_fill", "_need", "_parts", "_wrapped")

    def __init__(self) -> None:
        self._buf = bytearray()
        #: The length of the frame whose header was read, or -1.
        self._need = -1
        #: What is left to fill of the frame being read in place, or None.
        self._fill: list[memoryview] | None = None
        #: That frame's parts (payload, then buffers) and whether it came in a ``V`` envelope.
        self._parts: list[bytearray] = []
        self._wrapped = False

    def read(self, fd: int) -> list[Frame] | None:
        """The frames completed by what ``fd`` has now; None at end of file. Raises
        BlockingIOError when there is nothing to read, and OSError as ``os.read`` does."""
        if self._fill is not None:
            return self._read_in_place(fd, True)
        data = os.read(fd, _READ)
        if not data:
            return None
        frames = self.feed(data)
        if self._fill is not None:  # a large frame began: the rest of it is likely there
            more = self._read_in_place(fd, False)
            if more:
                frames.extend(more)
        return frames

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data`` (the next bytes read); a frame that ``data`` begins
        and that is to be read in place is left for :meth:`read`."""
        if self._fill is not None:
            raise RuntimeError("shoal: FrameReader.feed() while a frame is read in place")
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while True:
            need = self._need
            if need < 0:
                if len(buf) < 4:
                    break
                (need,) = _LEN.unpack_from(buf)
                if need == _BIG_MARK:
                    if len(buf) < 12:
                        break
                    (need,) = _BIG.unpack_from(buf, 4)
                    del buf[:12]
                else:
                    del buf[:4]
                self._need = need
            have = len(buf)
            if have >= need:
                if need and buf[0] == _V:
                    with memoryview(buf) as view:
                        frames.append(_unwrap(view[:need]))
                    del buf[:need]
                elif have == need:  # the common case: a read ends with a frame
                    frames.append((buf, ()))
                    self._buf = buf = bytearray()
                else:
                    frames.append((bytes(buf[:need]), ()))
                    del buf[:need]
                self._need = -1
                continue
            if need < IN_PLACE or not self._plan(buf, need):
                break
        return frames

    def _plan(self, buf: bytearray, need: int) -> bool:
        """Start reading a large frame in place (its first bytes are ``buf``, fewer than it
        has); False if more of it must come first (a ``V`` frame's table)."""
        if not buf:
            return False
        if buf[0] == _V:
            if len(buf) < 5:
                return False
            (count,) = _COUNT.unpack_from(buf, 1)
            table = 5 + 8 * count
            if len(buf) < table:
                return False
            lengths = struct.unpack_from(f"!{count}Q", buf, 5)
            inner = need - table - sum(lengths)
            if inner < 0:
                raise ValueError("shoal: corrupt V frame (its buffers outgrow it)")
            parts = [bytearray(inner)]
            parts.extend(bytearray(n) for n in lengths)
            del buf[:table]
            self._wrapped = True
        else:
            parts = [bytearray(need)]
            self._wrapped = False
        fill: list[memoryview] = []
        with memoryview(buf) as src:
            at = 0
            for part in parts:
                view = memoryview(part)
                take = min(len(src) - at, len(view))
                if take:
                    view[:take] = src[at : at + take]
                    at += take
                if take < len(view):
                    fill.append(view[take:])
        del buf[:]
        self._parts = parts
        self._fill = fill
        self._need = -1
        return True

    def _read_in_place(self, fd: int, first: bool) -> list[Frame] | None:
        fill = self._fill
        assert fill is not None
        for _ in range(_IN_PLACE_READS):
            try:
                n = os.readv(fd, fill[:_IOV_MAX])
            except OSError:  # nothing more now (or an error the next read raises again)
                if first:
                    raise
                return []
            if not n:  # end of file: the worker died while writing this frame
                return None if first else []
            first = False
            done = 0
            while done < len(fill) and n >= len(fill[done]):
                n -= len(fill[done])
                done += 1
            del fill[:done]
            if n:
                fill[0] = fill[0][n:]
            if not fill:
                parts = self._parts
                self._fill = None
                self._parts = []
                return [(parts[0], tuple(parts[1:]) if self._wrapped else ())]
        return []


def _unwrap(view: memoryview) -> Frame:
    """A whole ``V`` frame already in memory: its inner payload and buffers (copied out)."""
    (count,) = _COUNT.unpack_from(view, 1)
    at = 5 + 8 * count
    lengths = struct.unpack_from(f"!{count}Q", view, 5)
    inner = len(view) - at - sum(lengths)
    if inner < 0:
        raise ValueError("shoal: corrupt V frame (its buffers outgrow it)")
    payload = bytes(view[at : at + inner])
    at += inner
    buffers = []
    for n in lengths:
        buffers.append(bytearray(view[at : at + n]))
        at += n
    return payload, tuple(buffers)
