"""The worker's loop: what runs inside every worker process of the process backend.

Before running item ``i`` of chunk ``c`` the worker writes ``(c, i)`` into its slot of a shared
array (no system call), so when it dies the parent knows exactly which task it held: item -1 means
it was still unpickling the chunk, item ``n`` (the chunk's length) that it was pickling results.
For a chunk with a time limit it also writes each item's start time (``time.monotonic_ns``, the
same clock in every process), which the parent compares with the limit.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from shoal._backends._native_threads import cap_native_threads
from shoal._backends._segments import map_segments, probe
from shoal._backends._shared_init import flush_multiprocessing
from shoal._backends._wire import (
    CHUNK_HEAD,
    IN_PLACE,
    RESULT_HEAD,
    envelope,
    frame,
    frame_header,
    read_frame,
    unpack_segments,
    write_all,
    write_parts,
)
from shoal._core import _relay
from shoal._core._outcome import ENCODE, RAISED, TRANSPORT, Failure, short_repr
from shoal._core._pickling import dumps_result, dumps_result_parts, loads, rebind_to_main
from shoal._core._state import begin_process_worker
from shoal._core._task import ONE, STAR

__all__ = [
    "FAST",
    "FUNCTION_CACHE_SIZE",
    "SHARED",
    "SLOT_WIDTH",
    "TIMED",
    "TRACED",
    "prepare_for_forks",
    "redirect_output",
    "serve",
    "set_parent_death_signal",
]

#: int64s per worker slot: chunk id, item position, item start time (ns, monotonic).
SLOT_WIDTH = 3
#: Flag in a chunk's mode byte: record each item's start time.
TIMED = 0x80
#: Item position meaning "somewhere in the chunk" (the fast path does not record which).
FAST = -2
#: Flag in a chunk's mode byte: send the chunk's timings (a ``T`` frame), for timelines.
TRACED = 0x40
#: Flag in a chunk's mode byte: a table of shared-memory segments precedes the pickled items.
SHARED = 0x20
#: Items shorter than this on average are not timed one by one (their chunk's span is).
_FINE_TRACE_NS = 100_000

#: How many functions a worker keeps; the parent mirrors the same LRU to know what it sent.
FUNCTION_CACHE_SIZE = 64

_R = ord("R")
_C = ord("C")
_F = ord("F")
_G = ord("G")
_D = ord("D")
_Q = ord("Q")


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


_LIBC: Any = None


def set_parent_death_signal(expected_parent: int | None) -> None:
    """Die with our parent (Linux PR_SET_PDEATHSIG), and check it did not die before we asked."""
    if sys.platform.startswith("linux"):
        try:
            _libc().prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    ppid = os.getppid()
    if ppid == 1 or (expected_parent is not None and ppid != expected_parent):
        os._exit(1)


def prepare_for_forks() -> None:
    """Load what every forked worker needs once, in the process they are forked from (the
    zygote), rather than in each of them (importing ctypes alone costs milliseconds)."""
    if sys.platform.startswith("linux"):
        try:
            _libc()
        except OSError:
            pass


def _remote_tb(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f'\n"""\n{tb}"""'


def _picklable(exc: BaseException) -> BaseException:
    try:
        dumps_result(exc)
        return exc
    except BaseException:  # noqa: BLE001
        import pickle

        return pickle.PicklingError(f"{type(exc).__name__}: {exc}")


class _Unloadable:
    """Stands in for a function that could not be unpickled: each call reports that error."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_Parts = list[bytes | bytearray | memoryview]


def _encode(
    head: bytes, packed: bool, out: list[Any], pid: int, times: list[int] | None, traced: bool
) -> tuple[_Parts, list[memoryview]]:
    """A result frame's payload as ``(parts, buffers)`` (see :func:`_send_parts`). ``packed``:
    ``out`` is the plain list of results (every item succeeded, the common case: smallest to
    pickle and to hand back); else ``(ok, value)`` pairs.
    """
    try:
        body = (packed, out, times) if traced else (packed, out)
        parts, buffers = dumps_result_parts(body, IN_PLACE)
        return [head, *parts], buffers
    except BaseException:  # noqa: BLE001 - some item cannot be pickled: find which
        pass
    pairs = [(True, v) for v in out] if packed else out
    fixed: list[tuple[bool, Any]] = []
    for ok, value in pairs:
        try:
            dumps_result((ok, value))
            fixed.append((ok, value))
        except BaseException as exc:  # noqa: BLE001
            # A SystemExit raised while pickling is the task's own error; anything else means
            # the result could not be encoded.
            kind = ENCODE if isinstance(exc, Exception) else RAISED
            what = value.exc if isinstance(value, Failure) else value
            fixed.append(
                (False, Failure(kind, _picklable(exc), _remote_tb(exc), pid, short_repr(what)))
            )
    parts, buffers = dumps_result_parts(
        (False, fixed, times) if traced else (False, fixed), IN_PLACE
    )
    return [head, *parts], buffers


def _run_chunk(
    fn: Callable[..., Any],
    mode: int,
    items: list[Any],
    slots: Any,
    at: int,
    pid: int,
) -> tuple[bool, list[Any], list[int] | None]:
    """Run a chunk's items: ``(True, results, times)`` when all succeeded, else
    ``(False, pairs, times)``; ``times`` holds each item's start and end for a traced chunk of
    tasks worth timing one by one, else None.

    A time limit takes the general loop (it records each item's start in the slot). A trace
    times the first item; if it was shorter than about 100 us, the rest runs on the fast path
    and the chunk's span stands for its tasks (timing each would cost more than the tasks).
    """
    if mode & TIMED:
        times: list[int] | None = [] if mode & TRACED else None
        return False, _run_general(fn, mode, items, slots, at, pid, times, 0), times
    plain = mode & ~TRACED
    if mode & TRACED and items:
        times = []
        first = _run_general(fn, plain, items, slots, at, pid, times, 0, 1)
        if len(items) == 1:
            return False, first, times
        if times[1] - times[0] >= _FINE_TRACE_NS:
            return False, first + _run_general(fn, plain, items, slots, at, pid, times, 1), times
        packed, rest = _run_fast(fn, plain, items, slots, at, pid, 1)
        if packed and first[0][0]:
            return True, [first[0][1], *rest], None
        return False, first + ([(True, v) for v in rest] if packed else rest), None
    packed, values = _run_fast(fn, plain, items, slots, at, pid, 0)
    return packed, values, None


def _run_fast(
    fn: Callable[..., Any], mode: int, items: list[Any], slots: Any, at: int, pid: int, start: int
) -> tuple[bool, list[Any]]:
    """Items from ``start`` on at C speed: ``(True, results)``, or ``(False, pairs)`` once one
    failed.

    It does not record which item runs: the slot says FAST, and if the worker dies here the
    parent runs the chunk's items again one by one, so the culprit shows itself. list.extend
    keeps the results made before an exception, so the item that raised is at
    ``start + len(values)``; the rest of the chunk then runs in the general loop.
    """
    slots[at] = FAST
    values: list[Any] = []
    it = itertools.islice(items, start, None) if start else iter(items)
    try:
        if mode == ONE:
            values.extend(map(fn, it))
        elif mode == STAR:
            values.extend(itertools.starmap(fn, it))
        else:
            for args, kwargs in it:
                values.append(fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - a task's SystemExit is its own error
        pos = start + len(values)
        out: list[Any] = [(True, v) for v in values]
        out.append((False, Failure(RAISED, exc, _remote_tb(exc), pid)))
        del exc
        out.extend(_run_general(fn, mode, items, slots, at, pid, None, pos + 1))
        return False, out
    slots[at] = len(items)
    return True, values


def _run_general(
    fn: Callable[..., Any],
    mode: int,
    items: list[Any],
    slots: Any,
    at: int,
    pid: int,
    times: list[int] | None,
    first: int,
    stop: int | None = None,
) -> list[tuple[bool, Any]]:
    """Run items from ``first`` up to ``stop``, one outcome pair each; with ``times`` (a list)
    record each item's start and end in it, with TIMED each item's start in the slot."""
    out: list[tuple[bool, Any]] = []
    append = out.append
    timed = mode & TIMED
    mode &= ~(TIMED | TRACED)
    clock = time.monotonic_ns
    end = len(items) if stop is None else stop
    for pos in range(first, end):
        item = items[pos]
        if timed:
            slots[at + 1] = clock()
        if times is not None:
            times.append(clock())
        slots[at] = pos
        try:
            if mode == ONE:
                append((True, fn(item)))
            elif mode == STAR:
                append((True, fn(*item)))
            else:
                append((True, fn(*item[0], **item[1])))
        except BaseException as exc:  # noqa: BLE001 - a task's SystemExit is its own error
            append((False, Failure(RAISED, exc, _remote_tb(exc), pid)))
            del exc
        if times is not None:
            times.append(clock())
    if end == len(items):
        slots[at] = len(items)
    return out


_send_lock = threading.Lock()


def _fresh_send_lock() -> None:
    # A process forked from a worker (the zygote of a pool a task runs) while another thread
    # was sending would inherit the lock held, and its own workers would never send a frame.
    global _send_lock
    _send_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_send_lock)


def _send(fd: int, payload: bytes) -> None:
    # Log records and inner calls' progress are sent from other threads than the task's:
    # frames must not interleave.
    with _send_lock:
        if len(payload) < 65536:
            write_all(fd, frame(payload) + payload)
        else:
            write_all(fd, frame(payload))
            write_all(fd, payload)


def _send_parts(fd: int, parts: _Parts, buffers: list[memoryview]) -> None:
    """Send a payload given as parts, with its out-of-band buffers (a ``V`` frame): written
    with ``os.writev`` straight from the objects' memory, never joined into one copy."""
    size = sum(len(p) for p in parts)
    if buffers:
        _grow_pipe(fd)
        pieces = [envelope(size, [len(b) for b in buffers]), *parts, *buffers]
    elif size < IN_PLACE:
        pieces = [b"".join([frame_header(size), *parts])]  # one write
    else:
        _grow_pipe(fd)
        pieces = [frame_header(size), *parts]
    with _send_lock:
        write_parts(fd, pieces)


_grown = False


def _grow_pipe(fd: int) -> None:
    """Once a worker sends large results, give its result pipe a 256 KiB buffer (Linux, where
    the user's pipe quota allows): a quarter of the default 64 KiB pipe's context switches.

    Not more: pipe buffers count against a per-user quota (``/proc/sys/fs/pipe-user-pages-soft``,
    64 MiB by default), over which every new pipe of that user gets a tiny buffer; 1 MiB saved
    no measurable time over 256 KiB, and 256 KiB takes 256 busy workers to fill the quota.
    """
    global _grown
    if _grown:
        return
    _grown = True
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 18)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or over the user's quota: keep the default


def _retire(fd: int, worker_exit: Callable[[], object] | None, pid: int) -> int:
    """Leave in an orderly way: run ``worker_exit`` and send what it gave (an ``X`` frame);
    returns the exit code. Not on end of file (the parent stopped us, or is gone)."""
    if worker_exit is None:
        return 0
    value: Any = None
    try:
        value = rebind_to_main(worker_exit)()
        # A whole worker's state may be large: sent as results are (its large buffers out of
        # band, never joined into one copy).
        parts, buffers = dumps_result_parts((True, value), IN_PLACE)
    except BaseException as exc:  # noqa: BLE001 - the parent reports it, whatever it is
        # An exception raised while pickling a value the function returned is an encoding
        # error (a SystemExit there is still the function's own, as for a task's result).
        kind = ENCODE if value is not None and isinstance(exc, Exception) else RAISED
        failure = Failure(kind, _picklable(exc), _remote_tb(exc), pid, short_repr(value))
        parts, buffers = [dumps_result((False, failure))], []
        del exc
    _send_parts(fd, [b"X", *parts], buffers)
    return 0


class _ForwardHandler(logging.Handler):
    """Sends log records to the parent (``L`` frames), where its own handlers take them."""

    def __init__(self, fd: int, level: int) -> None:
        super().__init__(level)
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            state = dict(record.__dict__)
            state["msg"] = record.getMessage()
            state["args"] = None
            if record.exc_info:
                state["exc_text"] = logging.Formatter().formatException(record.exc_info)
            state["exc_info"] = None
            _send(self._fd, b"L" + dumps_result(state))
        except Exception:  # noqa: BLE001 - logging must never break the task
            self.handleError(record)


def _forward_logging(fd: int, level: int) -> None:
    """Records that no handler of the worker's takes go to the parent's handlers.

    Handlers inherited through fork are dropped (they belong to the parent); our handler is the
    *last resort*, so an initializer that configures logging (``basicConfig``) still wins.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    logging.lastResort = _ForwardHandler(fd, level)


def redirect_output(out_fd: int, err_fd: int) -> None:
    """Make fds 1 and 2 the pipes the parent drains; Python's streams write whole lines."""
    for fd, target in ((out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
    # Fresh streams on fds 1 and 2: under fork the inherited sys.stdout may be an in-memory
    # object of the parent's (pytest's capture, a notebook's stream) that nobody reads here.
    for name, fd in (("stdout", 1), ("stderr", 2)):
        try:
            getattr(sys, name).flush()
        except (ValueError, OSError, AttributeError):
            pass
        # Not closed here on purpose: it becomes sys.stdout/sys.stderr for the worker's life.
        stream = open(fd, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return int(psutil.Process().memory_info().rss)


def _ready(result_fd: int, no_segments: str | None) -> None:
    """Say this worker is ready: the parent gives work to workers that are up (whose
    initializer ran). "1": large buffers may come as shared segments; else they must come in
    the pickle (why not is for the parent's log)."""
    if no_segments is None:
        _send(result_fd, b"Y1")
    else:
        _send(result_fd, b"Y0" + no_segments.encode(errors="replace"))


def serve(
    task_fd: int,
    result_fd: int,
    slots: Any,
    slot_index: int,
    first_frame: bytes | None = None,
    setup: Callable[[], None] | None = None,
) -> int:
    """Run the worker protocol until told to quit or the parent goes away; returns the exit code.

    Args:
        task_fd: read end of the pipe the parent sends frames on.
        result_fd: write end of the pipe results go back on.
        slots: the shared ``(chunk id, item)`` array, as a memoryview of int64.
        slot_index: this worker's slot.
        first_frame: the ``I`` frame, when this process was forked holding it (a pool's first
            worker): it starts without waiting for the parent to write it.
        setup: the rest of the process's set-up (its fds, its parent-death signal, its
            output pipes), run before any code of the user's: without an initializer, after
            the ready frame, so the first chunk is on its way meanwhile.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    pid = os.getpid()
    at_chunk = SLOT_WIDTH * slot_index
    at_item = at_chunk + 1
    first = first_frame if first_frame is not None else read_frame(task_fd)
    if first is None:
        return 0
    (
        initializer, initargs, max_tasks, init_logger, memory_limit, log_level, threads, segments,
        worker_exit,
    ) = loads(memoryview(first)[1:])
    # Before the initializer, which may load numpy; the rest after the first chunk.
    capping = cap_native_threads(threads)
    # Checked once, before the initializer (which may change what this process may open).
    no_segments = probe(segments)
    if initializer is None:
        _ready(result_fd, no_segments)
    if setup is not None:
        setup()
    begin_process_worker()  # before the initializer too, which may fill the state
    _forward_logging(result_fd, log_level)
    # Map-like calls with progress=True in a task send their counts here (P frames).
    _relay.install(lambda payload: _send(result_fd, payload))
    if initializer is not None:
        try:
            rebind_to_main(initializer)(*initargs)
        except BaseException as exc:
            logging.getLogger(init_logger).critical("Exception in initializer:", exc_info=True)
            # What the initializer wrote to a multiprocessing queue (a QueueHandler: CPython's
            # test_init) reaches it before the parent learns of the failure, as in the stdlib,
            # whose worker exits (flushing its queues) before its parent notices.
            flush_multiprocessing()
            _send(result_fd, b"B" + dumps_result((repr(exc), _remote_tb(exc))))
            return 1
        del initializer, initargs
        _ready(result_fd, no_segments)
    # The memory guard compares RSS with the size after the initializer (not USS: under fork,
    # merely reading inherited objects writes their reference counts and raises USS).
    baseline = _rss() if memory_limit is not None else 0
    next_check = 0.0
    functions: OrderedDict[bytes, Any] = OrderedDict()
    #: The segments each cached function is bound to (the ones that arrived with a G frame).
    bound: dict[bytes, set[int]] = {}
    done = 0
    clock = time.monotonic_ns
    while True:
        msg = read_frame(task_fd)
        if msg is None:
            return 0
        kind = msg[0]
        if kind == _C:
            cid, key, mode, count = CHUNK_HEAD.unpack_from(msg, 1)
            slots[at_chunk] = cid
            slots[at_item] = -1
            fn = functions[key]
            functions.move_to_end(key)
            traced = bool(mode & TRACED)
            times: list[int] | None = None
            started = clock()
            try:
                at = 1 + CHUNK_HEAD.size
                if mode & SHARED:
                    mode &= ~SHARED
                    table, at = unpack_segments(msg, at)
                    items = loads(memoryview(msg)[at:], buffers=map_segments(table))
                else:
                    items = loads(memoryview(msg)[at:])
                if isinstance(fn, _Unloadable):
                    raise fn.exc
            except BaseException as exc:  # noqa: BLE001 - includes a SystemExit in __setstate__
                fail = Failure(TRANSPORT, _picklable(exc), _remote_tb(exc), pid)
                packed, out = False, [(False, fail)] * count
                times = None
                del exc
            else:
                del msg
                started = clock()
                packed, out, times = _run_chunk(fn, mode, items, slots, at_item, pid)
                del items
            del fn
            ended = clock()
            head = (b"T" if traced else b"R") + RESULT_HEAD.pack(cid, started, ended)
            _send_parts(result_fd, *_encode(head, packed, out, pid, times, traced))
            del out
            if capping is not None:
                capping.start()
                capping = None
            done += 1
            if max_tasks is not None and done >= max_tasks:
                return _retire(result_fd, worker_exit, pid)
            if memory_limit is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                grown = _rss() - baseline
                if grown > memory_limit:
                    _send(result_fd, b"M" + dumps_result(grown))
                    return _retire(result_fd, worker_exit, pid)
        elif kind in (_F, _G):
            key = bytes(msg[1:17])
            try:
                if kind == _G:
                    table, at = unpack_segments(msg, 17)
                    bound[key] = {desc[0] for desc in table}
                    fn = loads(memoryview(msg)[at:], buffers=map_segments(table))
                else:
                    fn = loads(memoryview(msg)[17:])
                functions[key] = rebind_to_main(fn)
            except BaseException as exc:  # noqa: BLE001
                functions[key] = _Unloadable(exc)
                del exc
            fn = None
            if len(functions) > FUNCTION_CACHE_SIZE:
                old, _ = functions.popitem(last=False)
                bound.pop(old, None)
        elif kind == _D:
            # Those segments' calls are over: drop the functions bound to them (the parent
            # drops the same from its mirror of this cache), so their mappings go.
            over = {desc[0] for desc in unpack_segments(msg, 1)[0]}
            for key in [k for k, serials in bound.items() if serials & over]:
                del bound[key]
                functions.pop(key, None)
            # Dropped (unless a task kept a reference): the parent may close its fd now, and
            # be the one that frees the pages.
            _send(result_fd, b"d" + msg[1:])
        elif kind == _Q:
            return _retire(result_fd, worker_exit, pid)
        else:  # pragma: no cover - a bug in the parent, not a user error
            raise RuntimeError(f"shoal worker: unknown frame {kind!r}")
