"""The process backend: one manager thread owns every worker, pipe and queued chunk.

Other threads only append to the manager's queues and wake it (a byte on a pipe, written only when
it sleeps). The manager waits on everything at once with a selector: each worker's result pipe
(end of file there is the moment the worker dies), writability of task pipes that have output
waiting, the zygote's reports and the wake-up pipe; its timeout is the next deadline (a task's
time limit, a retry's backoff, a SIGKILL after SIGTERM). Writes to workers are non-blocking and
buffered, so a worker that stops reading never stalls the pool (the family of gh-94777).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import multiprocessing
import os
import selectors
import signal
import threading
import time
import traceback
import types
import weakref
from collections import OrderedDict, deque
from typing import Any

from shoal._backends._launch import WorkerHandle, make_launcher
from shoal._backends._native_threads import native_threads_for
from shoal._backends._segments import Segment, SegmentStore, close_later
from shoal._backends._shared_init import init_frame
from shoal._backends._spawn import SharedSlots
from shoal._backends._wire import (
    CHUNK_HEAD,
    RESULT_HEAD,
    FrameReader,
    frame_header,
    pack_segments,
    unpack_segments,
)
from shoal._backends._worker import (
    FAST,
    FUNCTION_CACHE_SIZE,
    SHARED,
    SLOT_WIDTH,
    TIMED,
    TRACED,
)
from shoal._core._backend import WorkerConfig
from shoal._core._callbacks import mark_internal_thread
from shoal._core._events import EventHub, TaskEvent, WorkerEvent
from shoal._core._options import settle
from shoal._core._outcome import (
    BROKEN,
    CANCELLED,
    DIED,
    RAISED,
    TIMEOUT,
    TRANSPORT,
    Failure,
    short_repr,
)
from shoal._core._output import OutputForwarder
from shoal._core._pickling import OUT_OF_BAND, digest, dumps, loads, mark_large_bytes
from shoal._core._relay import NestedProgress
from shoal._core._state import ExitResults
from shoal._core._stats import Statistics, StatsRecorder
from shoal._core._task import CALL, Chunk, ItemsLater
from shoal._errors import TaskTimeout, WorkerDied

__all__ = ["ProcessBackend"]

#: Chunks a worker holds at once when chunks are short: one running, one waiting in its pipe
#: to hide the round trip. For longer chunks a worker holds one, so a short task never waits
#: behind a long one while another worker is idle.
PREFETCH = 2
#: Chunks that take less than this (a moving average of measured times) are prefetched.
PREFETCH_BELOW = 0.005
#: Why a worker is stopped on Ctrl-C: everything it holds is cancelled, nothing re-queued.
_INTERRUPTED = "interrupted"
#: Why a closing pool stops a worker that is still starting: nothing is left for it to do.
_UNNEEDED = "unneeded"
#: How long a stopped worker has to exit on SIGTERM before SIGKILL.
TERMINATE_GRACE = 1.0
_WRITEV_MAX = 64

_stable_wires: dict[Any, tuple[bytes, bytes, tuple[Segment, ...]]] = {}


def _function_wire(
    fn: Any, store: SegmentStore | None = None, call: Any = None, hold: bool = False
) -> tuple[bytes, bytes, tuple[Segment, ...]]:
    """The (digest, pickled bytes, segments) of a function. Importable functions are pickled
    once per process: their pickle is a reference, and cannot go stale.

    With a ``store``, large buffers the function holds (a ``functools.partial`` bound to an
    array) go to shared segments of ``call``; the digest then covers the small pickle and the
    segments' serials, never the buffers' content."""
    try:
        hit = _stable_wires.get(fn)
    except TypeError:  # an unhashable callable
        hit = None
    if hit is not None:
        return hit
    if store is not None:
        buffers: list[Any] = []
        blob = dumps(fn, buffers)
        if buffers:
            segments = store.segments(buffers, call, hold)
            serials = b"".join(seg.desc[0].to_bytes(8, "big") for seg in segments)
            return digest(blob + serials), blob, segments
    else:
        blob = dumps(fn)
    wire = (digest(blob), blob, ())
    if (
        isinstance(fn, types.FunctionType | types.BuiltinFunctionType)
        and getattr(fn, "__module__", "__main__") != "__main__"
        and "<" not in fn.__qualname__
    ):
        if len(_stable_wires) > 256:
            _stable_wires.clear()
        _stable_wires[fn] = wire
    return wire


def _unencoded(epoch: int) -> list[Any]:
    """The wire of a chunk not pickled yet (see submit_many): only its epoch is known."""
    return [None, None, None, 0, epoch, (), (), None]


def _estimate_key(fn: Any) -> tuple[str, str] | None:
    """What tasks' times are remembered by: the function's name, through ``partial``s (the
    same function bound to other arguments takes about as long), never its identity."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        return None
    return (str(getattr(fn, "__module__", "")), qualname)


class _Worker:
    __slots__ = (
        "assigned",
        "bound",
        "check_at",
        "err_fd",
        "functions",
        "handle",
        "head_since",
        "inflight",
        "kill_at",
        "out",
        "out_fd",
        "partial",
        "pidfd",
        "quitting",
        "reader",
        "ready",
        "result_fd",
        "retiring",
        "segments",
        "shared",
        "slot",
        "stopping",
        "task_fd",
        "writing",
    )

    def __init__(self, handle: WorkerHandle, fds: list[int]) -> None:
        self.handle = handle
        self.slot = handle.slot
        self.task_fd, self.result_fd, self.out_fd, self.err_fd = fds
        #: The unfinished last line of the worker's stdout (1) and stderr (2).
        self.partial: dict[int, bytes] = {1: b"", 2: b""}
        self.out: deque[memoryview] = deque()
        self.reader = FrameReader()
        self.inflight: deque[Chunk] = deque()
        self.functions: OrderedDict[bytes, None] = OrderedDict()
        #: The segments each function of ``functions`` is bound to (mirrors the worker's).
        self.bound: dict[bytes, frozenset[int]] = {}
        #: Serials of the segments its cached functions are bound to (it is told to drop
        #: those functions when the segments end).
        self.segments: set[int] = set()
        #: It can map the pool's shared segments (its probe said so in its ready frame).
        self.shared = False
        self.assigned = 0
        #: Takes no more chunks (max_tasks_per_child reached, memory guard); exits by itself.
        self.retiring = False
        #: Was told to quit (the pool is closing).
        self.quitting = False
        #: Why it is being stopped (TIMEOUT, CANCELLED, BROKEN), or None.
        self.stopping: str | None = None
        #: When to look at its running task's start time again (tasks with a time limit).
        self.check_at: float | None = None
        #: When to SIGKILL it if SIGTERM did not end it.
        self.kill_at: float | None = None
        self.writing = False
        #: Said it is ready (its initializer ran): only then does it get chunks, so a worker
        #: that is up takes the work rather than one still starting.
        self.ready = False
        #: When the chunk at the head of ``inflight`` became the one the worker runs.
        self.head_since = 0.0
        #: Readable once the process has exited (opened at its end of file): a worker of this
        #: process's own can be reaped then; one the zygote forked is gone once its exit status
        #: came too (or the zygote was killed, on terminate, and none will come).
        self.pidfd: int | None = None

    def takes_work(self) -> bool:
        return self.ready and not (self.retiring or self.quitting or self.stopping)

    def starting(self) -> bool:
        """Launched, not ready yet (still starting, or in its initializer)."""
        return not self.ready and not self.stopping


class ProcessBackend:
    """Runs chunks in worker processes (fork via a zygote, forkserver or spawn)."""

    kind = "process"

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        #: Large buffers of functions and items, sent once per call in shared memory. First:
        #: it checks SHOAL_SHARED_MEMORY, and a bad value must leave nothing to clean up.
        self._store = SegmentStore(self._wake)
        ctx = config.context if config.context is not None else multiprocessing.get_context()
        self._context = ctx
        self._max = config.max_workers
        # Twice as many slots as workers: a worker being stopped keeps its slot until it is
        # gone, while its replacement already runs.
        n_slots = 2 * self._max
        self._slots = SharedSlots(SLOT_WIDTH * n_slots)
        self._slot_view = self._slots.view
        # Made per worker: initargs such as a multiprocessing.Queue are shared with each worker
        # as multiprocessing shares them with a process it starts (see _shared_init). Before
        # make_launcher: under fork the zygote must inherit what this registers.
        self._init_frame = init_frame(
            (
                config.initializer,
                config.initargs,
                config.max_tasks_per_child,
                config.init_logger,
                config.extra.get("max_memory_per_worker"),
                logging.getLogger().getEffectiveLevel(),
                native_threads_for(config.max_workers),
                self._store.probe,
                config.worker_exit,
            ),
            ctx.get_start_method(),
        )
        #: What ``worker_exit`` gave in each worker that retired (``X`` frames).
        self.exit_results = ExitResults()
        #: Shows workers' stdout, stderr and log records in this process.
        self.output = OutputForwarder(f"{config.name}-output")
        self._output_queued = False
        #: Progress of map-like calls that tasks run (P frames), drawn here or sent further up.
        self._nested = NestedProgress(config.name)
        self._nested_queued = False
        self._pending: deque[Chunk] = deque()
        self._delayed: list[tuple[float, int, Chunk]] = []  # retries waiting out their backoff
        #: Ended segments whose fd waits for workers to drop them: serial -> (fd, their slots).
        self._unmapping: dict[int, tuple[int, set[int]]] = {}
        self._seq = itertools.count()
        self._commands: deque[tuple[Any, ...]] = deque()
        self._workers: dict[int, _Worker] = {}
        self._dying: list[tuple[_Worker, float]] = []
        self._free_slots = list(range(n_slots - 1, -1, -1))
        self._cids = itertools.count(1)
        #: Counts interrupts: a chunk remembers the epoch it was submitted in.
        self._epoch = 0
        self._closing = False
        self._cancel_on_close = False
        #: Workers start on demand (an executor's) and nothing of the user's runs in one before
        #: it is ready or as it quits: a closing pool may stop one still starting (_schedule).
        #: Not a Pool's: the stdlib's workers all exit with 0 on close(), and its ``_pool``
        #: shows their exit codes.
        self._quiet_start = (
            not config.start_all and config.initializer is None and config.worker_exit is None
        )
        self._terminating = False
        self._broken: str | None = None
        # Deaths in a row of workers that held no started task: a worker that cannot even start
        # (a broken interpreter, an import error under spawn) must not be respawned for ever.
        self._idle_deaths = 0
        #: Moving average of how long a chunk takes on a worker (None until measured).
        self._chunk_time: float | None = None
        #: Moving average of one task's time in a worker, by function (see item_time()).
        self._item_times: dict[tuple[str, str], float] = {}
        self._asleep = False
        self._started = threading.Event()
        self._ended = threading.Event()
        self.recorder = StatsRecorder()
        #: Observers (timelines) subscribe here; tasks are timed only while one listens.
        self.events = EventHub()
        direct_first = (
            (config.start_all or config.first_early)
            and ctx.get_start_method() == "fork"
            and threading.current_thread() is threading.main_thread()
        )
        # Under fork the zygote is forked here, before this pool's manager thread exists, or,
        # with direct_first, by the first worker, which this constructor forks itself.
        self._launcher = make_launcher(
            ctx, self._slots, config.name, direct_first, native_threads_for(config.max_workers)
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Closed only when nothing can call _wake() any more: closing them when the manager ends
        # could let a late wake-up write into a reused fd number. Not at exit: weakref's exit
        # hook may run before the one that ends live pools (_core/_lifecycle), and a wake-up
        # pipe closed under a running manager loses the wake-up: the pool's end waits for ever.
        weakref.finalize(self, _close_fds, self._wake_r, self._wake_w).atexit = False
        self._selector = selectors.DefaultSelector()
        if direct_first:
            self._start_first_workers()
        self._thread = threading.Thread(
            target=self._run, name=f"{config.name}-manager", daemon=True
        )
        self._thread.start()

    # ---- called from other threads -------------------------------------------------------

    def item_time(self, fn: Any) -> float | None:
        """How long one task of ``fn`` took in a worker lately (seconds), if it ran here: what
        the facades size a map's chunks by (see ``chunk_sizes``)."""
        key = _estimate_key(fn)
        return None if key is None else self._item_times.get(key)

    def _note_item_time(self, fn: Any, seconds: float) -> None:
        key = _estimate_key(fn)
        if key is None:
            return
        times = self._item_times
        old = times.get(key)
        if old is None and len(times) >= 256:
            times.clear()  # bounded: a pool that runs ever new functions forgets old ones
        times[key] = seconds if old is None else 0.7 * old + 0.3 * seconds

    @property
    def broken(self) -> str | None:
        return self._broken

    @property
    def manager_thread(self) -> threading.Thread:
        return self._thread

    def _wake(self) -> None:
        if self._asleep:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # a byte is already waiting

    def _command(self, *cmd: Any) -> None:
        self._commands.append(cmd)
        self._wake()

    def start(self, wait: bool = True) -> None:
        """Start every worker. ``wait=False``: only ask the manager to (an executor's first
        submission: its chunk queues behind the request, and ``settle()`` waits for both)."""
        if self._started.is_set():
            return
        self._command("start")
        if wait:
            self._started.wait()

    def settle(self) -> None:
        """Return once the manager has acted on everything posted so far: the workers that the
        queued work needs are launched (the executors' ``_processes`` reads them after this)."""
        if threading.current_thread() is self._thread:
            return
        done = threading.Event()
        self._command("settle", done)
        # _close_everything sets _ended first, then every settle event still queued.
        if not self._ended.is_set():
            done.wait()

    def submit(self, chunk: Chunk) -> None:
        chunk.wire = self._encode(chunk, self._epoch)
        self._pending.append(chunk)
        self._wake()
        if self._ended.is_set():
            self._fail_left_behind()

    def submit_many(self, chunks: list[Chunk], eager: int) -> None:
        """Queue the rest of a map (its first chunk went through submit()) with one wake-up of
        the manager: one by one, each chunk woke it, and its turn held the GIL while this
        thread waited to pickle the next. The chunks' items are ``ItemsLater``: the first
        ``eager`` chunks are cut and pickled here; the manager does the others, ahead of need
        while it has nothing else to do, or when it hands them out. Pickled here, a million
        tiny items held the GIL for tens of milliseconds (the items' pages are copied on
        first touch after a fork) while the manager needed it to send the first chunks.

        A chunk that cannot be pickled fails its own items with the error (which the map
        raises), and the others run, as in the stdlib's Pool, whose task thread pickles."""
        epoch = self._epoch
        for n, chunk in enumerate(chunks):
            chunk.wire = _unencoded(epoch)
            if n < eager:
                if isinstance(chunk.items, ItemsLater):
                    chunk.items = chunk.items.take()
                try:
                    chunk.wire = self._encode(chunk, epoch)
                except Exception:  # noqa: BLE001 - the manager tries again, and fails its items
                    pass
        self._pending.extend(chunks)
        self._wake()
        if self._ended.is_set():
            self._fail_left_behind()

    def _encode(self, chunk: Chunk, epoch: int) -> list[Any]:
        """A chunk's payload: ``[digest, function pickle, items pickle, chunk id, epoch
        (the interrupt epoch it was submitted in, see interrupt()), the function's segments,
        the items' segments, the in-band form for a worker without shared memory]``."""
        store = self._store if self._store.enabled else None
        if store is None:
            key, blob, _ = _function_wire(chunk.fn)
            return [key, blob, dumps(chunk.items), 0, epoch, (), (), None]
        # The call this chunk is part of: what keeps a large buffer sent once (Sink.call). A
        # call of one chunk (apply, submit) needs no more than the chunk to hold its segments;
        # a stream's items are held by their chunks only, or a long imap would keep them all.
        call = getattr(chunk.sink, "call", None) or chunk.sink
        hold = chunk.mode != CALL
        key, blob, fn_segments = _function_wire(chunk.fn, store, call, hold)
        buffers: list[Any] = []
        items = dumps(chunk.items, buffers)
        if len(items) >= OUT_OF_BAND:
            # Something big stayed in the pickle: large bytes, perhaps, which the pickler
            # cannot send out of band unless marked. Looked for only now: the scan costs more
            # than pickling small items does.
            marked = mark_large_bytes(chunk.items, chunk.mode)
            if marked is not chunk.items:
                buffers = []
                items = dumps(marked, buffers)
        if buffers:
            hold_items = hold and not getattr(call, "streams", False)
            item_segments = store.segments(buffers, call, hold_items)
        else:
            item_segments = ()
        return [key, blob, items, 0, epoch, fn_segments, item_segments, None]

    def _encode_retry(self, chunk: Chunk) -> bool:
        """Encode a remainder or a retry, made here after a failure or a death (while the chunk
        it came from still holds the call's segments, so it finds them rather than copying the
        buffers again); False if it cannot be encoded: its items are failed."""
        try:
            chunk.wire = self._encode(chunk, 0)
        except BaseException as exc:  # noqa: BLE001
            self._deliver_all(chunk, Failure(TRANSPORT, exc))
            return False
        return True

    def _encode_ahead(self) -> bool:
        """Pickle one queued chunk of submit_many()'s while there is nothing else to do (the
        workers are busy, or still starting), so that handing it out later costs no more than
        a chunk the caller pickled; up to a few chunks per worker ahead. True if one was."""
        for n, chunk in enumerate(self._pending):
            if n >= 2 * self._max:
                return False
            if chunk.wire is not None and chunk.wire[0] is None:
                if not self._encode_later(chunk):
                    self._pending.remove(chunk)  # failed: its items were told so
                return True
        return False

    def _encode_later(self, chunk: Chunk) -> bool:
        """Cut and pickle a chunk of submit_many()'s; False if it cannot be pickled: its items
        fail with the error, as if their call had raised it."""
        if isinstance(chunk.items, ItemsLater):
            chunk.items = chunk.items.take()
        try:
            chunk.wire = self._encode(chunk, chunk.wire[4])
        except Exception as exc:  # noqa: BLE001
            self._deliver_all(chunk, Failure(RAISED, exc))
            return False
        return True

    def _drop_segments(self) -> None:
        """Segments no longer held: workers whose cached functions are bound to them drop
        those (a ``D`` frame; their mirrors here forget the same). Each segment's fd is closed
        once they said they did (``d``) or are gone, so this process frees the pages."""
        queue = self._store.ended
        ended: dict[int, int] = {}
        while queue:
            serial, fd = queue.popleft()
            ended[serial] = fd
        waiting: dict[int, set[int]] = {}
        for w in self._workers.values():
            hit = w.segments.intersection(ended)
            if not hit:
                continue
            w.segments -= hit
            for key in [k for k, serials in w.bound.items() if serials & hit]:
                del w.bound[key]
                w.functions.pop(key, None)
            if w.task_fd < 0:
                continue  # it is being stopped: its death counts as its answer
            self._queue_out(w, b"D" + pack_segments([(s, 0, 0, 0, 0) for s in sorted(hit)]))
            for serial in hit:
                waiting.setdefault(serial, set()).add(w.slot)
        for serial, fd in ended.items():
            if serial in waiting:
                self._unmapping[serial] = (fd, waiting[serial])
            else:
                close_later(fd)

    def _unmapped(self, slot: int, serials: Any) -> None:
        """The worker in ``slot`` dropped these segments (or died)."""
        for serial in serials:
            entry = self._unmapping.get(serial)
            if entry is not None:
                entry[1].discard(slot)
                if not entry[1]:
                    del self._unmapping[serial]
                    close_later(entry[0])

    def _in_band(self, chunk: Chunk) -> tuple[bytes, bytes, bytes]:
        """The chunk's digest, function and items with every buffer in the pickle, for a worker
        that cannot map shared memory (made once, kept in the wire)."""
        wire = chunk.wire
        if wire[7] is None:
            key, blob, _ = _function_wire(chunk.fn)
            items = dumps(chunk.items) if wire[6] else wire[2]
            wire[7] = (key, blob, items)
        in_band: tuple[bytes, bytes, bytes] = wire[7]
        return in_band

    def shutdown(self, *, wait: bool, cancel_pending: bool) -> None:
        self._command("close", cancel_pending)
        if wait:
            self.join()

    def terminate(self) -> None:
        self._command("terminate")

    def interrupt(self) -> None:
        """Ctrl-C: cancel every queued task, stop the running ones; the pool stays usable.

        Only what was submitted before this call: work the caller submits right after (an
        interactive session going on) must not be cancelled by the manager acting late."""
        epoch = self._epoch
        self._epoch += 1
        self._command("interrupt", epoch)

    def cancel_running(self, sink: Any) -> None:
        """Stop the worker running a task of ``sink`` (a forced cancel)."""
        self._command("cancel", sink)

    def join(self, timeout: float | None = None) -> bool:
        if threading.current_thread() is self._thread:
            return False
        return self._ended.wait(timeout)

    def workers(self) -> list[WorkerHandle]:
        return [w.handle for w in list(self._workers.values()) if not w.stopping]

    # ---- the manager thread --------------------------------------------------------------

    def _run(self) -> None:
        mark_internal_thread()
        # Ctrl-C is the main thread's business; spawned workers inherit this mask, so a SIGINT
        # to the process group cannot kill them while they start (they ignore it once running).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        sel = self._selector
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        if self._launcher.fileno is not None:
            sel.register(self._launcher.fileno, selectors.EVENT_READ, "zygote")
        try:
            while True:
                self._handle_commands()
                if self._store.ended:
                    self._drop_segments()
                self._schedule()
                if self._finished():
                    break
                timeout = self._timeout()
                self._asleep = True  # before the checks: a command posted after them wakes us
                if self._commands or (self._pending and self._has_room()):
                    timeout = 0
                elif self._pending and self._encode_ahead():
                    timeout = 0  # look at the pipes, then go on pickling while they are quiet
                events = sel.select(timeout)
                self._asleep = False
                for key, _mask in events:
                    data = key.data
                    if data is None:
                        try:
                            os.read(self._wake_r, 4096)
                        except BlockingIOError:
                            pass
                    elif data == "zygote":
                        self._zygote_reports(key.fd)
                    elif data[0] == "r":
                        self._read(data[1])
                    elif data[0] == "o":
                        self._read_output(data[1], data[2])
                    elif data[0] == "x":
                        self._drop_pidfd(data[1])  # it exited: _reap() below finds it
                    else:
                        self._flush(data[1])
                self._timers()
                self._reap()
        except BaseException:  # noqa: BLE001 - a bug here must not hang the caller
            traceback.print_exc()
            self._broken = "shoal's manager thread failed; see the traceback above"
            for w in list(self._workers.values()):
                w.handle.kill()
            self._fail_all(BROKEN, RuntimeError(self._broken))
        finally:
            self._close_everything()

    def _live(self) -> int:
        return sum(1 for w in self._workers.values() if not w.stopping)

    def _finished(self) -> bool:
        return (
            (self._closing or self._terminating or self._broken is not None)
            and not self._pending
            and not self._delayed
            and not self._workers
            and not self._dying
        )

    def _timeout(self) -> float | None:
        soonest = self._delayed[0][0] if self._delayed else None
        for w, deadline in self._dying:
            if w.pidfd is None and w.handle._process is not None:
                return 0.005  # no pidfd for this one: look again soon
            # Else its pidfd or the zygote's report wakes the manager; the deadline is the
            # bound should neither come.
            if soonest is None or deadline < soonest:
                soonest = deadline
        for w in self._workers.values():
            for at in (w.check_at, w.kill_at):
                if at is not None and (soonest is None or at < soonest):
                    soonest = at
        if soonest is None:
            return None
        return max(0.0, soonest - time.monotonic())

    def _has_room(self) -> bool:
        if self._broken is not None or self._terminating:
            return True  # pending chunks are failed at once
        depth = self._depth()
        now = time.monotonic()
        if self._launch_wanted() > 0:
            return True
        return any(
            len(w.inflight) < self._depth_of(w, depth, now) and w.takes_work()
            for w in self._workers.values()
        )

    def _start_first_workers(self) -> None:
        """Start a Pool's workers from its constructor, before the manager thread exists: this
        process forks the first itself, which forks the zygote, which forks the others. Still
        single-threaded as far as this pool goes, so this is as safe as forking the zygote."""
        first = self._max if self._config.start_all else 1  # the others on demand
        slots = [self._take_slot() for _ in range(first)]
        # Made before the fork, which carries it: the first worker need not wait for a write.
        first_frame = self._init_frame()
        try:
            handle, fds, others = self._launcher.launch_direct(slots[0], first_frame, slots[1:])
        except OSError as exc:
            self._free_slots.extend(reversed(slots))
            self._break(f"could not start a worker process: {exc}")
            return
        self._add_worker(handle, fds)
        # The others are forked by the zygote that the first forks, without a request from
        # here; their initializer frames wait in their pipes.
        for other_handle, other_fds in others:
            w = self._add_worker(other_handle, other_fds)
            self._queue_out(w, self._init_frame())
            self._flush(w)
        self._free_slots.extend(reversed(slots[1 + len(others) :]))
        for _ in range(first - 1 - len(others)):  # no zygote to fork them ahead
            launched = self._launch()
            if launched is None:
                return
            self._flush(launched)
        if self._config.start_all:
            self._started.set()  # start() has nothing left to do

    def _launch_wanted(self) -> int:
        """How many workers to start for the queued chunks (those starting count already)."""
        room = min(self._max - self._live(), len(self._free_slots))
        if room <= 0:
            return 0
        starting = sum(1 for w in self._workers.values() if w.starting())
        return max(0, min(room, len(self._pending) - starting))

    def _depth(self) -> int:
        """Chunks a busy worker may hold: prefetch only when chunks are known to be short."""
        t = self._chunk_time
        return PREFETCH if t is not None and t < PREFETCH_BELOW else 1

    def _depth_of(self, w: _Worker, depth: int, now: float) -> int:
        # A second chunk goes only behind a chunk of the same call (a short task of another
        # call must not wait behind a task that may be long), and not behind a chunk that
        # already runs longer than a short one would.
        if depth > 1 and w.inflight:
            if now - w.head_since > PREFETCH_BELOW:
                return 1
            if not self._pending or self._pending[0].sink is not w.inflight[-1].sink:
                return 1
        return depth

    def _handle_commands(self) -> None:
        commands = self._commands
        while commands:
            cmd = commands.popleft()
            what = cmd[0]
            if what == "start":
                # Not once broken: a submission racing a failed initializer posts this, and it
                # may be read after the break stopped the workers; one started then would get
                # no frame (_schedule does nothing more when broken) and wait for ever.
                while (
                    self._live() < self._max
                    and self._free_slots
                    and not self._closing
                    and self._broken is None
                    and not self._terminating
                ):
                    if self._launch() is None:
                        break
                self._started.set()
            elif what == "close":
                self._closing = True
                if cmd[1]:
                    self._cancel_on_close = True
            elif what == "terminate":
                self._begin_terminate()
            elif what == "interrupt":
                self._cancel_pending("cancelled by KeyboardInterrupt", up_to=cmd[1])
                for w in list(self._workers.values()):
                    if w.inflight and not w.stopping:
                        self._stop(w, _INTERRUPTED)
            elif what == "settle":
                self._schedule()
                cmd[1].set()
            elif what == "cancel":
                sink = cmd[1]
                for w in list(self._workers.values()):
                    if w.inflight and w.inflight[0].sink is sink and not w.stopping:
                        self._stop(w, CANCELLED)

    def _take_slot(self) -> int:
        slot = self._free_slots.pop()
        base = SLOT_WIDTH * slot
        self._slot_view[base] = 0
        self._slot_view[base + 1] = -1
        return slot

    def _launch(self) -> _Worker | None:
        if self._broken is not None or self._terminating:
            return None  # a broken or terminated pool starts no worker
        slot = self._take_slot()
        try:
            handle, fds = self._launch_in(slot)
        except OSError as exc:
            self._free_slots.append(slot)
            self._break(f"could not start a worker process: {exc}")
            return None
        w = self._add_worker(handle, fds)
        self._queue_out(w, self._init_frame())
        return w

    def _launch_in(self, slot: int) -> tuple[WorkerHandle, list[int]]:
        try:
            return self._launcher.launch(slot)
        except (BrokenPipeError, ConnectionResetError):
            fd = self._launcher.fileno
            if fd is None:
                raise
            # The zygote's end of the socket closed, and its report of that is not read yet:
            # a first worker that died before forking the zygote is reaped in the same turn
            # that its socket end closes, and the next turn's scheduling asks for its
            # replacement before selecting. Read the report now (it starts a stand-in zygote,
            # or breaks the pool, as it would have a moment later) and ask the stand-in.
            self._zygote_reports(fd)
            if self._broken is not None or self._launcher.fileno is None:
                raise
            return self._launcher.launch(slot)

    def _add_worker(self, handle: WorkerHandle, fds: list[int]) -> _Worker:
        for fd in fds:
            os.set_blocking(fd, False)
        w = _Worker(handle, fds)
        self._workers[handle.slot] = w
        self.recorder.worker_started(w, handle.name, handle.pid)
        if self.events.active:
            self.events.worker_changed(
                WorkerEvent(handle.name, handle.pid, time.monotonic(), "started")
            )
        self._selector.register(w.result_fd, selectors.EVENT_READ, ("r", w))
        self._selector.register(w.out_fd, selectors.EVENT_READ, ("o", w, 1))
        self._selector.register(w.err_fd, selectors.EVENT_READ, ("o", w, 2))
        return w

    def _schedule(self) -> None:
        pending = self._pending
        if self._broken is not None:
            self._fail_all(BROKEN, RuntimeError(self._broken))
            # Every worker is stopped on the break; should one have been added since, it is
            # stopped too, or the pool's end would wait for it.
            for w in list(self._workers.values()):
                if not w.stopping:
                    self._stop(w, BROKEN)
            return
        if self._terminating:
            self._cancel_pending("the pool was terminated before this task ran")
            return
        if self._closing and self._cancel_on_close:
            # The stdlib's shutdown(cancel_futures=True) runs what it already moved to its call
            # queue; here, the chunks that idle workers, or those started for them, will take.
            idle = sum(
                1 for w in self._workers.values()
                if not w.inflight and (w.takes_work() or w.starting())
            )
            self._cancel_pending("the executor was shut down before this task ran", keep=idle)
        if self._config.start_all and not self._closing and self._started.is_set():
            while self._live() < self._max and self._free_slots:
                if self._launch() is None:
                    return
        if pending:
            for w in list(self._workers.values()):
                if not pending:
                    break
                if not w.inflight and w.takes_work():
                    self._assign(w)
            for _ in range(self._launch_wanted()):
                if self._launch() is None:
                    return
            depth = self._depth()
            if depth > 1:
                now = time.monotonic()
                for w in list(self._workers.values()):
                    while (
                        pending
                        and len(w.inflight) < self._depth_of(w, depth, now)
                        and w.takes_work()
                    ):
                        if not self._assign(w):
                            break
        if self._closing and not pending and not self._delayed:
            for w in list(self._workers.values()):
                if not w.inflight and not w.quitting and not w.stopping:
                    if not w.ready and self._quiet_start:
                        # Still starting, and no code of the user's would run in it (no
                        # initializer, no worker_exit): stopped now, rather than waited for
                        # through its start-up only to be told to quit.
                        self._stop(w, _UNNEEDED)
                    else:
                        w.quitting = True
                        self._queue_out(w, b"Q")
            if all(
                (w.quitting or w.stopping == _UNNEEDED) and not w.inflight
                for w in self._workers.values()
            ):
                # Nothing can need a new worker now (nothing queued, none runs a chunk that
                # could be retried): the zygote may end along with the workers. If none of
                # its workers still here needs it to report an exit status (each is stopped as
                # unneeded, or none is left), it is killed rather than left to end after them,
                # as on terminate.
                if all(
                    w.stopping == _UNNEEDED
                    for w in self._workers.values()
                    if w.handle._process is None
                ):
                    self._launcher.kill()
                else:
                    self._launcher.retire()
        for w in list(self._workers.values()):
            if w.out:
                self._flush(w)

    def _assign(self, w: _Worker) -> bool:
        """Give the next wanted chunk to ``w``; False when none is left."""
        pending = self._pending
        while pending:
            chunk = pending.popleft()
            if not chunk.sink.claim():
                chunk.release()
                continue
            if chunk.wire is None and not self._encode_retry(chunk):
                continue  # a remainder or a retry that could not be encoded: failed
            if chunk.wire[0] is None and not self._encode_later(chunk):
                continue  # queued by submit_many, and it cannot be pickled: failed
            wire = chunk.wire
            fn_segments: tuple[Segment, ...] = wire[5]
            item_segments: tuple[Segment, ...] = wire[6]
            if (fn_segments or item_segments) and not w.shared:
                try:
                    key, blob, items_blob = self._in_band(chunk)
                except BaseException as exc:  # noqa: BLE001
                    self._deliver_all(chunk, Failure(TRANSPORT, exc))
                    continue
                fn_segments = item_segments = ()
            else:
                key, blob, items_blob = wire[0], wire[1], wire[2]
            cid = wire[3] = next(self._cids)
            functions = w.functions
            if key in functions:
                functions.move_to_end(key)
            else:
                if fn_segments:
                    table = [seg.desc for seg in fn_segments]
                    self._queue_out(w, b"G" + key + pack_segments(table), blob)
                    serials = frozenset(desc[0] for desc in table)
                    w.bound[key] = serials
                    w.segments.update(serials)
                else:
                    self._queue_out(w, b"F" + key + blob)
                functions[key] = None
                if len(functions) > FUNCTION_CACHE_SIZE:
                    old, _ = functions.popitem(last=False)
                    w.bound.pop(old, None)
            timeout = chunk.opts.timeout if chunk.opts is not None else None
            mode = chunk.mode | (TIMED if timeout is not None else 0)
            if self.events.active:
                mode |= TRACED
            if item_segments:
                # Items are mapped afresh for each chunk and go with it: nothing to drop later.
                table = [seg.desc for seg in item_segments]
                head = b"C" + CHUNK_HEAD.pack(
                    cid, key, mode | SHARED, len(chunk.indices)
                ) + pack_segments(table)
            else:
                head = b"C" + CHUNK_HEAD.pack(cid, key, mode, len(chunk.indices))
            self._queue_out(w, head, items_blob)
            if not w.inflight:
                w.head_since = time.monotonic()
                if timeout is not None:
                    w.check_at = w.head_since + timeout
            w.inflight.append(chunk)
            w.assigned += 1
            limit = self._config.max_tasks_per_child
            if limit is not None and w.assigned >= limit:
                w.retiring = True
            return True
        return False

    def _queue_out(self, w: _Worker, head: bytes, body: bytes | None = None) -> None:
        """Queue one frame: a length header, then the payload in one or two buffers (a big
        argument is never copied into a joined buffer)."""
        n = len(head) + (len(body) if body is not None else 0)
        w.out.append(memoryview(frame_header(n)))
        w.out.append(memoryview(head))
        if body is not None:
            w.out.append(memoryview(body))

    def _flush(self, w: _Worker) -> None:
        out = w.out
        if w.task_fd < 0:
            out.clear()
            return
        while out:
            bufs = [out[i] for i in range(min(len(out), _WRITEV_MAX))]
            try:
                n = os.writev(w.task_fd, bufs)
            except BlockingIOError:
                break
            except OSError:
                out.clear()  # the worker is gone; its result pipe will say so
                break
            while n:
                first = out[0]
                if n >= len(first):
                    n -= len(first)
                    out.popleft()
                else:
                    out[0] = first[n:]
                    n = 0
        if out and not w.writing:
            self._selector.register(w.task_fd, selectors.EVENT_WRITE, ("w", w))
            w.writing = True
        elif not out and w.writing:
            self._selector.unregister(w.task_fd)
            w.writing = False

    def _read(self, w: _Worker) -> None:
        try:
            frames = w.reader.read(w.result_fd)
        except BlockingIOError:
            return
        except OSError:
            frames = None
        if frames is None:
            self._on_eof(w)
            return
        results = []
        for msg, buffers in frames:
            kind = msg[0]
            if kind == 82 or kind == 84:  # R, T: a chunk's results (T: with its timings)
                results.append((*self._chunk_done(w, msg), msg, kind == 84, buffers))
            elif kind == 89:  # Y: ready (its initializer ran)
                w.ready = True
                w.shared = msg[1:2] == b"1"
                if not w.shared and len(msg) > 2:
                    self._store.disable(
                        f"worker pid {w.handle.pid}: {msg[2:].decode(errors='replace')}"
                    )
            elif kind == 76:  # L: a log record made in the worker
                self._log_record(w, msg)
            elif kind == 80:  # P: progress of a map-like call a task runs
                self._on_progress(w, msg)
            elif kind == 100:  # d: it dropped these segments
                table, _ = unpack_segments(msg, 1)
                self._unmapped(w.slot, [desc[0] for desc in table])
            elif kind == 77:  # M: the memory guard retires this worker after its chunk
                w.retiring = True
            elif kind == 66:  # B: the initializer failed
                message, tb = loads(memoryview(msg)[1:])
                self._break(f"a worker's initializer failed: {message}{tb}")
            elif kind == 88:  # X: what worker_exit gave as the worker retires
                self._on_exit_result(w, msg, buffers)
        if results:
            # The worker's next chunk is written before these results are unpickled and handed
            # over: a big chunk's results take the manager milliseconds, which the worker would
            # otherwise spend waiting (unless a prefetched chunk was already in its pipe).
            self._refill(w)
            for chunk, took, msg, traced, buffers in results:
                self._on_result(w, chunk, took, msg, traced, buffers)

    def _refill(self, w: _Worker) -> None:
        """Give ``w`` what it may hold of the queued chunks and write it now (_schedule does
        the same for every worker at the top of the manager's loop)."""
        if (
            not self._pending
            or not w.takes_work()
            or self._terminating
            or self._broken is not None
            or self._cancel_on_close  # _schedule decides which queued chunks still run
        ):
            return
        depth = self._depth()
        now = time.monotonic()
        while self._pending and (not w.inflight or len(w.inflight) < self._depth_of(w, depth, now)):
            if not self._assign(w):
                break
        if w.out:
            self._flush(w)

    def _on_exit_result(
        self, w: _Worker, msg: bytes | bytearray, buffers: tuple[bytearray, ...]
    ) -> None:
        # Unpickled here, on the manager thread, as it arrives: the first worker's state is
        # ready while the others still work or pickle theirs (the caller waits in join()).
        who = f"worker {w.handle.name} (pid {w.handle.pid})"
        try:
            ok, value = loads(memoryview(msg)[1:], buffers=buffers)
        except BaseException as exc:  # noqa: BLE001 - a value that cannot be unpickled here
            ok, value = False, Failure(TRANSPORT, exc, pid=w.handle.pid)
        self.exit_results.add(ok, value, who)

    def _on_progress(self, w: _Worker, msg: bytes | bytearray) -> None:
        # The task running now made the call: its own call's bar (if any) sets the kind, and
        # the line ends at the latest when that task's chunk does.
        head = w.inflight[0] if w.inflight else None
        cid = head.wire[3] if head is not None and head.wire is not None else 0
        outer = getattr(head.sink, "progress", None) if head is not None else None
        self._nested.event(w, w.handle.name, msg, cid, outer)
        self._nested_queued = True

    def _log_record(self, w: _Worker, msg: bytes | bytearray) -> None:
        try:
            state = loads(memoryview(msg)[1:])
        except Exception:  # noqa: BLE001 - a record we cannot read is not worth a failure
            return
        record = logging.makeLogRecord(state)
        record.processName = w.handle.name
        record.process = w.handle.pid
        self.output.record(record)
        self._output_queued = True

    def _read_output(self, w: _Worker, stream: int, final: bool = False) -> bool:
        """Forward whole lines of a worker's stdout/stderr (with ``final``, all there is now);
        True if any were forwarded."""
        fd = w.out_fd if stream == 1 else w.err_fd
        if fd < 0:
            return False
        sent = False
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._close_output(w, stream)
                return True
            data = w.partial[stream] + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) > (1 << 16):  # a very long line: pass it on in pieces
                cut = len(data)
            w.partial[stream] = data[cut:]
            if cut:
                self.output.lines(stream, data[:cut])
                sent = self._output_queued = True
            if not final:
                break
        return sent

    def _close_output(self, w: _Worker, stream: int) -> None:
        fd = w.out_fd if stream == 1 else w.err_fd
        if fd < 0:
            return
        rest = w.partial[stream]
        if rest:
            self.output.lines(stream, rest + b"\n")
            w.partial[stream] = b""
        self._selector.unregister(fd)
        os.close(fd)
        if stream == 1:
            w.out_fd = -1
        else:
            w.err_fd = -1

    def _chunk_done(self, w: _Worker, msg: bytes | bytearray) -> tuple[Chunk, float]:
        """A result frame came: the chunk leaves the worker's hands, and how long it took
        there counts (_on_result hands its results over, once the worker has its next chunk)."""
        self._idle_deaths = 0
        cid = RESULT_HEAD.unpack_from(msg, 1)[0]
        chunk = w.inflight.popleft()
        assert chunk.wire[3] == cid, (chunk.wire[3], cid)
        now = time.monotonic()
        took = now - w.head_since
        avg = self._chunk_time
        self._chunk_time = took if avg is None else 0.8 * avg + 0.2 * took
        w.head_since = now
        if w.inflight and w.inflight[0].opts is not None and w.inflight[0].opts.timeout:
            w.check_at = now + w.inflight[0].opts.timeout
        else:
            w.check_at = None
        return chunk, took

    def _on_result(
        self,
        w: _Worker,
        chunk: Chunk,
        took: float,
        msg: bytes | bytearray,
        traced: bool,
        buffers: tuple[bytearray, ...],
    ) -> None:
        # What a task printed shows before its result is handed back (unless the parent's
        # stdout is too slow to keep up: then the wait is bounded).
        self._read_output(w, 1, final=True)
        self._read_output(w, 2, final=True)
        if self._output_queued:
            self._output_queued = False
            self.output.flush(0.05)
        cid, started_ns, ended_ns = RESULT_HEAD.unpack_from(msg, 1)
        if self._nested:  # lines are open: end those this chunk's tasks left open
            self._nested.chunk_done(w, cid)
            self._nested_queued = True
        if self._nested_queued:
            # The task's inner calls' last lines show before its result is handed back.
            self._nested_queued = False
            self._nested.flush(0.05)
        user = (ended_ns - started_ns) / 1e9
        n = len(chunk.indices)
        if n:
            self._note_item_time(chunk.fn, user / n)
        self.recorder.chunk_done(
            w, n, user, took - user, chunk.job, chunk.indices[0] if n else 0, chunk.items
        )
        try:
            # Out-of-band buffers become the results' memory (numpy arrays): no copy here.
            body = loads(memoryview(msg)[1 + RESULT_HEAD.size :], buffers=buffers)
        except BaseException as exc:  # noqa: BLE001 - a result that cannot be unpickled here
            self._deliver_all(chunk, Failure(TRANSPORT, exc, pid=w.handle.pid))
            return
        del msg, buffers
        packed, data = body[0], body[1]
        if len(data) != len(chunk.indices):
            # Never expected (a bug on one side or the other): fail the chunk's items rather
            # than leave their call waiting for results that will not come, or misplace them.
            self._deliver_all(chunk, Failure(TRANSPORT, RuntimeError(
                f"shoal bug: worker pid {w.handle.pid} sent {len(data)} results for a chunk "
                f"of {len(chunk.indices)} tasks; please report it"
            ), pid=w.handle.pid))
            return
        if traced:
            self._emit_tasks(w, chunk, packed, data, body[2], started_ns, ended_ns)
        del body
        sink = chunk.sink
        self.recorder.done += len(data)
        try:
            if packed:  # every item succeeded: hand the results over in one call
                many = getattr(sink, "deliver_many", None)
                if many is not None:
                    many(chunk.indices, data)
                else:
                    for idx, value in zip(chunk.indices, data, strict=True):
                        sink.deliver(idx, True, value)
            else:
                for pos, idx in enumerate(chunk.indices):
                    ok, value = data[pos]
                    if ok:
                        sink.deliver(idx, True, value)
                    else:
                        self._fail_item(chunk, pos, value)
        except BaseException:  # noqa: BLE001 - a facade bug must not end the manager
            traceback.print_exc()
        chunk.release()

    def _emit_tasks(
        self,
        w: _Worker,
        chunk: Chunk,
        packed: bool,
        data: list[Any],
        times: list[int] | None,
        started_ns: int,
        ended_ns: int,
    ) -> None:
        """Tell the listeners what ran: each task, or the chunk's span for very short ones."""
        events = self.events
        name, pid = w.handle.name, w.handle.pid
        n = len(data)
        if times is not None and len(times) == 2 * n:
            for pos in range(n):
                events.task_done(
                    TaskEvent(chunk.job, chunk.indices[pos], name, pid,
                              times[2 * pos] / 1e9, times[2 * pos + 1] / 1e9,
                              packed or data[pos][0])
                )
        elif n:
            ok = packed or all(pair[0] for pair in data)  # a packed chunk: every task succeeded
            events.task_done(
                TaskEvent(chunk.job, chunk.indices[0], name, pid, started_ns / 1e9,
                          ended_ns / 1e9, ok, n > 1, n)
            )

    def statistics(self) -> Statistics:
        return self.recorder.snapshot()

    def _fail_item(self, chunk: Chunk, pos: int, failure: Failure) -> None:
        """Retry a failed item, or deliver its failure."""
        retry, delay = settle(chunk, pos, failure)
        if retry is not None:
            if not self._encode_retry(retry):
                return
            self.recorder.retried += 1
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), retry))
            else:
                self._pending.appendleft(retry)
            return
        self.recorder.failed += 1
        if failure.args is None and pos < len(chunk.items):
            failure.args = short_repr(chunk.items[pos])
        chunk.sink.deliver(chunk.indices[pos], False, failure)

    def _deliver_all(self, chunk: Chunk, failure: Failure) -> None:
        self.recorder.failed += len(chunk.indices)
        for idx in chunk.indices:
            try:
                chunk.sink.deliver(idx, False, failure)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
        chunk.release()

    def _on_eof(self, w: _Worker) -> None:
        sel = self._selector
        sel.unregister(w.result_fd)
        if w.writing:
            sel.unregister(w.task_fd)
            w.writing = False
        os.close(w.result_fd)
        self._close_task_pipe(w)
        w.check_at = None
        self._dying.append((w, time.monotonic() + 2.0))
        pid = w.handle.pid
        if pid is not None and w.handle._exitcode is None and hasattr(os, "pidfd_open"):
            # Its exit wakes the manager: this process's own child (the first worker, a spawned
            # one), or one the zygote forked, whose exit status the zygote reports besides
            # (unless the zygote was killed: terminate, see _begin_terminate).
            try:
                w.pidfd = os.pidfd_open(pid)
            except OSError:
                pass  # gone and reaped already, or no pidfds here: the timed look finds it
            else:
                self._selector.register(w.pidfd, selectors.EVENT_READ, ("x", w))

    def _zygote_reports(self, fd: int) -> None:
        for kind, _slot, pid, _code in self._launcher.read_reports():
            if kind == b"Z":
                self._selector.unregister(fd)
                if self._closing or self._terminating:
                    self._launcher.zygote_lost()
                elif self._launcher.never_started:
                    # The first worker died before it forked the zygote: a spawned one stands
                    # in, and the workers asked of the lost one are replaced like dead ones.
                    try:
                        new = self._launcher.respawn()
                    except OSError as exc:
                        self._launcher.zygote_lost()
                        self._break(f"could not start a zygote process: {exc}")
                    else:
                        self._selector.register(new, selectors.EVENT_READ, "zygote")
                else:
                    self._launcher.zygote_lost()
                    self._break("the zygote process that forks workers died")
            elif kind == b"P":
                for w in self._workers.values():
                    if w.handle.pid == pid:
                        self.recorder.worker_pid(w, pid)
                        if w.stopping:
                            w.handle.terminate()

    def _timers(self) -> None:
        now = time.monotonic()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._pending.append(heapq.heappop(delayed)[2])
        for w in list(self._workers.values()):
            if w.kill_at is not None and w.kill_at <= now:
                w.handle.kill()
                # Until its pid is known (a zygote reports it), try again shortly.
                w.kill_at = None if w.handle.pid is not None else now + 0.05
            if w.check_at is not None and w.check_at <= now and not w.stopping:
                self._check_time_limit(w, now)

    def _check_time_limit(self, w: _Worker, now: float) -> None:
        chunk = w.inflight[0] if w.inflight else None
        if chunk is None or chunk.opts is None or chunk.opts.timeout is None:
            w.check_at = None
            return
        limit = chunk.opts.timeout
        base = SLOT_WIDTH * w.slot
        view = self._slot_view
        if view[base] == chunk.wire[3] and 0 <= view[base + 1] < len(chunk.indices):
            started = view[base + 2] / 1e9
            if now - started < limit:
                w.check_at = started + limit
                return
        elif view[base] == chunk.wire[3] and view[base + 1] == len(chunk.indices):
            w.check_at = now + limit  # pickling its results: the task itself is done
            return
        self._stop(w, TIMEOUT)

    def _stop(self, w: _Worker, why: str) -> None:
        """Stop a worker (SIGTERM, then SIGKILL after a grace period); a replacement starts at
        once, since a stopping worker no longer counts towards the pool's size."""
        w.stopping = why
        w.check_at = None
        w.handle.terminate()
        w.kill_at = time.monotonic() + TERMINATE_GRACE
        # End of file on its task pipe ends an idle worker too, whatever became of the signal
        # (a zygote's worker whose pid is not known yet cannot be signalled).
        self._close_task_pipe(w)

    def _close_task_pipe(self, w: _Worker) -> None:
        if w.task_fd < 0:
            return
        if w.writing:
            self._selector.unregister(w.task_fd)
            w.writing = False
        os.close(w.task_fd)
        w.task_fd = -1
        w.out.clear()

    def _drop_pidfd(self, w: _Worker) -> None:
        if w.pidfd is not None:
            self._selector.unregister(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = None

    def _reap(self) -> None:
        if not self._dying:
            return
        now = time.monotonic()
        still = []
        for w, deadline in self._dying:
            # Gone once its pidfd fired (if it has one) and its exit status is known.
            alive = w.pidfd is not None or (w.handle.exitcode is None and w.handle.is_alive())
            if alive and now < deadline:
                still.append((w, deadline))
            else:
                self._drop_pidfd(w)
                self._on_death(w)
        self._dying = still

    def _on_death(self, w: _Worker) -> None:
        # Its last words: whatever it wrote before it ended is in the pipes now.
        for stream in (1, 2):
            self._read_output(w, stream, final=True)
            self._close_output(w, stream)
        del self._workers[w.slot]
        if self._unmapping:
            self._unmapped(w.slot, list(self._unmapping))
        self._free_slots.append(w.slot)
        code = w.handle.exitcode
        if self._nested:
            # Its inner calls' lines end before its tasks' failures are handed out.
            self._nested.worker_gone(w, f"its worker ended (exit code {code})")
            self._nested.flush(0.05)
        pid = w.handle.pid
        inflight = list(w.inflight)
        w.inflight.clear()
        base = SLOT_WIDTH * w.slot
        started = bool(inflight) and self._slot_view[base] == inflight[0].wire[3]
        expected = (
            code == 0 and (w.retiring or w.quitting or self._closing) and not started
        ) or w.stopping == _UNNEEDED
        lost = not expected and not self._terminating
        self.recorder.worker_ended(w, lost)
        if self.events.active:
            what = "retired" if expected else ("stopped" if w.stopping else "died")
            self.events.worker_changed(
                WorkerEvent(w.handle.name, pid, time.monotonic(), what, f"exit code {code}")
            )
        if not expected and not self._terminating and not w.stopping:
            self._idle_deaths = 0 if started else self._idle_deaths + 1
            if self._idle_deaths >= max(3, self._max):
                self._break(
                    f"workers keep dying before they run any task (the last: "
                    f"{WorkerDied(pid, code)}); their stderr above may say why"
                )
        if not inflight:
            return
        final: Failure | None = None
        if self._broken is not None:
            final = Failure(BROKEN, RuntimeError(self._broken))
        elif self._terminating:
            final = Failure(CANCELLED, RuntimeError("the pool was terminated"))
        elif w.stopping == _INTERRUPTED:
            final = Failure(CANCELLED, RuntimeError("cancelled by KeyboardInterrupt"))
        if final is not None:
            for chunk in inflight:
                self._deliver_all(chunk, final)
            return
        running = inflight[0]
        requeue: list[Chunk] = []
        if started:
            n = len(running.indices)
            pos = self._slot_view[base + 1]
            if pos == FAST and n > 1:
                # Died somewhere in a chunk run on the fast path: run its items again one per
                # chunk, uncounted; the culprit will die alone and be blamed then.
                for p in range(n):
                    part = running.subset([p])
                    if self._encode_retry(part):
                        requeue.append(part)
                requeue.extend(inflight[1:])
                running.release()
                self._requeue(requeue)
                return
            blamed = [pos] if 0 <= pos < n else list(range(n))
            for p in blamed:
                self._fail_item(running, p, self._death_failure(w, running, p, code))
            rest = [p for p in range(n) if p not in blamed]
            if rest:
                part = running.subset(rest)
                if self._encode_retry(part):
                    requeue.append(part)
            running.release()
        else:
            requeue.append(running)
        requeue.extend(inflight[1:])
        self._requeue(requeue)

    def _requeue(self, chunks: list[Chunk]) -> None:
        """Put chunks back at the front of the queue, in their order."""
        for chunk in reversed(chunks):
            if chunk.wire is not None:
                chunk.wire[3] = 0
            self._pending.appendleft(chunk)

    def _death_failure(self, w: _Worker, chunk: Chunk, pos: int, code: int | None) -> Failure:
        pid = w.handle.pid
        args = short_repr(chunk.items[pos]) if pos < len(chunk.items) else None
        if w.stopping == TIMEOUT:
            self.recorder.timed_out += 1
            limit = chunk.opts.timeout if chunk.opts is not None else None
            err = TaskTimeout(
                f"task {chunk.indices[pos]} ran longer than its task_timeout of {limit} s; "
                f"its worker (pid {pid}) was stopped and replaced"
            )
            return Failure(TIMEOUT, err, pid=pid, args=args)
        if w.stopping == CANCELLED:
            return Failure(CANCELLED, RuntimeError("cancelled while running"), pid=pid)
        return Failure(DIED, WorkerDied(pid, code), pid=pid, args=args)

    def _cancel_pending(self, why: str, up_to: int | None = None, keep: int = 0) -> None:
        """Cancel queued chunks (with ``up_to``: only those submitted in that epoch or before;
        ``keep``: all but the first ``keep``)."""
        while self._delayed:
            self._pending.append(heapq.heappop(self._delayed)[2])
        head = [self._pending.popleft() for _ in range(min(keep, len(self._pending)))]
        kept: deque[Chunk] = deque()
        while self._pending:
            chunk = self._pending.popleft()
            if up_to is not None and chunk.wire is not None and chunk.wire[4] > up_to:
                kept.append(chunk)
                continue
            self._deliver_all(chunk, Failure(CANCELLED, RuntimeError(why)))
        self._pending.extend(kept)
        self._pending.extendleft(reversed(head))

    def _fail_all(self, kind: str, exc: BaseException) -> None:
        while self._delayed:
            self._pending.append(heapq.heappop(self._delayed)[2])
        while self._pending:
            self._deliver_all(self._pending.popleft(), Failure(kind, exc))
        for w in self._workers.values():
            while w.inflight:
                self._deliver_all(w.inflight.popleft(), Failure(kind, exc))

    def _break(self, why: str) -> None:
        if self._broken is not None:
            return
        self._broken = why
        self._fail_all(BROKEN, RuntimeError(why))
        for w in list(self._workers.values()):
            if not w.stopping:
                self._stop(w, BROKEN)

    def _begin_terminate(self) -> None:
        if self._terminating:
            return
        self._terminating = True
        self._closing = True
        self._cancel_pending("the pool was terminated before this task ran")
        for w in list(self._workers.values()):
            while w.inflight:
                self._deliver_all(
                    w.inflight.popleft(),
                    Failure(CANCELLED, RuntimeError("the pool was terminated")),
                )
            if not w.stopping:
                self._stop(w, CANCELLED)
        # No worker will be asked for again, and no exit status matters: the zygote is killed
        # now, its exit overlapping its workers' instead of following theirs (each forked
        # worker's pidfd, opened at its end of file, says when it is gone). Its reports so far
        # are read first: a worker it forked a moment ago gets its pid, and so its signal.
        if self._launcher.fileno is not None:
            self._zygote_reports(self._launcher.fileno)
        self._launcher.kill()

    def _close_everything(self) -> None:
        for w in list(self._workers.values()):
            w.handle.kill()
        for w, _ in self._dying:
            if w.pidfd is not None:
                os.close(w.pidfd)
                w.pidfd = None
        try:
            self._launcher.close()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        self._selector.close()
        self._nested.close()
        self._nested.flush()
        self._store.close()
        for fd, _ in self._unmapping.values():
            close_later(fd)
        self._unmapping.clear()
        self.output.flush()
        weakref.finalize(self, self._slots.close)
        self._started.set()
        self._ended.set()
        self._fail_left_behind()
        for cmd in list(self._commands):
            if cmd[0] == "settle":
                cmd[1].set()

    def _fail_left_behind(self) -> None:
        """Fail chunks queued as the manager ends or after: a submission that found the pool
        unbroken a moment before a failed initializer broke it, whose manager then ended with
        its last worker, queues its chunk where no one would look. The manager calls this once
        it has set ``_ended``, a submitter once it has queued a chunk and sees ``_ended`` set:
        one of them finds the chunk (each is taken once), and its call fails, never waits."""
        if self._broken is not None:
            failure = Failure(BROKEN, RuntimeError(self._broken))
        else:
            failure = Failure(CANCELLED, RuntimeError("the pool had ended before this task ran"))
        while True:
            try:
                chunk = self._pending.popleft()
            except IndexError:
                return
            self._deliver_all(chunk, failure)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
