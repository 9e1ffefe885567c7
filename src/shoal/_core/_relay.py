"""Progress of a pool run inside a worker, shown by the parent (``progress=True`` nested).

A bar drawn in a worker would reach the parent as garbage: its stderr is a pipe the parent
forwards line by line. So inside a process worker a map-like call gets a :class:`RemoteBar`
instead, which only counts; one sender thread per worker process sends each changed bar's
counts up the worker's result pipe as a ``P`` frame, at most every :data:`INTERVAL` seconds, and
the bar's final counts when its call ends (synchronously, so they arrive before the task's
result). The parent's backend hands the frames to a :class:`NestedProgress`, which draws each
inner call on a line of its own (the display is made by the factory the facades register, see
``shoal/_observing.py``: this module stays free of ``observe``), or, when the parent is itself
a worker, passes them further up with its worker's name in front.

A ``P`` frame's payload is a plain pickled tuple of simple values: see :func:`encode`.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "INTERVAL",
    "NestedProgress",
    "RemoteBar",
    "decode",
    "encode",
    "in_worker",
    "install",
    "remote_bar",
    "set_display",
]

#: Seconds between two frames of one inner call (its final counts are sent at once).
INTERVAL = 0.1

# -- the worker's side ---------------------------------------------------------------------------

#: (pid, send): how this process's worker sends a frame payload to its parent. The pid: a
#: process forked from a worker (a zygote of a pool it runs, the user's own fork) inherits this
#: module but must not write into its parent's pipe.
_channel: tuple[int, Callable[[bytes], None]] | None = None
_keys = itertools.count(1)
#: Frames this process sent (tests read it to check the throttle).
sent = 0


def install(send: Callable[[bytes], None]) -> None:
    """Called by a process worker at start: ``send(payload)`` writes a frame to the parent."""
    global _channel
    _channel = (os.getpid(), send)


def in_worker() -> Callable[[bytes], None] | None:
    """The send function if this process is a shoal process worker, else None."""
    channel = _channel
    if channel is not None and channel[0] == os.getpid():
        return channel[1]
    return None


def encode(
    key: Any,
    path: tuple[str, ...],
    desc: str,
    done: int,
    failed: int,
    total: int | None,
    began: float,
    final: bool,
    why: str | None = None,
) -> bytes:
    """A ``P`` frame: ``key`` names the inner call among this worker's, ``path`` the workers it
    went through below this one (empty: made in this worker), ``began`` its start
    (``time.monotonic()``: one clock for every process of the machine), ``final`` that it ended
    (``why``: ended early, and why)."""
    return b"P" + pickle.dumps(
        (key, path, desc, done, failed, total, began, final, why), pickle.HIGHEST_PROTOCOL
    )


def decode(payload: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    return tuple(pickle.loads(payload[1:]))


class _Sender:
    """The worker's one thread that sends the open bars' counts a few times a second."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.bars: dict[int, RemoteBar] = {}
        self.thread: threading.Thread | None = None

    def add(self, bar: RemoteBar) -> None:
        with self.cond:
            self.bars[bar.key] = bar
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="shoal-progress-relay", daemon=True
                )
                self.thread.start()

    def discard(self, bar: RemoteBar) -> None:
        with self.cond:
            self.bars.pop(bar.key, None)

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait(INTERVAL)
                if not self.bars:
                    # Ends when no bar is open, so an idle worker keeps no thread ticking.
                    self.thread = None
                    return
                bars = list(self.bars.values())
            for bar in bars:
                bar._send(final=False)


_sender = _Sender()


def _after_fork() -> None:
    # A child forked while a lock was held (by the sender or a bar mid-send) would inherit it
    # held for ever: a fork of a worker starts without bars, thread or locks of its own.
    global _sender, _send_lock
    _sender = _Sender()
    _send_lock = threading.Lock()


#: Serialises one bar's frames (the sender's and its final one) so the final is the last.
_send_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class RemoteBar:
    """A progress bar inside a worker: counts like ``ProgressBar`` and leaves the drawing to
    the parent. ``update`` is called on the inner pool's thread: it only counts, under a lock."""

    def __init__(self, send: Callable[[bytes], None], total: int | None, desc: str) -> None:
        self.key = next(_keys)
        self.total = total
        self.desc = desc
        self.done = 0
        self.failed = 0
        self.kind = "remote"
        self._began = time.monotonic()
        self._lock = threading.Lock()
        self._send_fn = send
        self._last: tuple[int, int, int | None] | None = None
        self._closed = False
        _sender.add(self)

    def update(self, ok: bool = True) -> None:
        with self._lock:
            self.done += 1
            if not ok:
                self.failed += 1

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = total

    def close(self, timeout: float | None = 2.0) -> None:
        """Send the final counts now: they reach the parent before the task's own result."""
        self._send(final=True)
        _sender.discard(self)

    def __enter__(self) -> RemoteBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return f"<RemoteBar {self.desc!r} {self.done}/{total}, {self.failed} failed>"

    def _send(self, *, final: bool) -> None:
        global sent
        with _send_lock:
            if self._closed:
                return
            with self._lock:
                state = (self.done, self.failed, self.total)
            if not final and state == self._last:
                return
            self._last = state
            self._closed = final
            payload = encode(self.key, (), self.desc, *state, self._began, final)
            try:
                self._send_fn(payload)
                sent += 1
            except OSError:
                pass  # the parent is gone: this worker is about to end anyway


def remote_bar(total: int | None, desc: str) -> RemoteBar | None:
    """A :class:`RemoteBar` if this process is a shoal process worker, else None."""
    send = in_worker()
    return None if send is None else RemoteBar(send, total, desc)


# -- the parent's side ---------------------------------------------------------------------------

#: Makes the parent's line for an inner call: ``factory(desc, total, began, outer)``, where
#: ``outer`` is the outer call's own bar (or None); returns an object with ``show(done, failed,
#: total)`` and ``close(why=...)``. Registered by the facades (``_observing``).
_display: Callable[..., Any] | None = None


def set_display(factory: Callable[..., Any]) -> None:
    global _display
    _display = factory


class _Line:
    """One inner call: its workers (the one that runs it last), its title, its last counts."""

    __slots__ = ("bar", "began", "cid", "desc", "last", "path")

    def __init__(self, path: tuple[str, ...], desc: str, began: float, cid: int) -> None:
        self.bar: Any = None
        self.path = path
        self.desc = desc
        self.began = began
        self.cid = cid
        self.last: tuple[int, int, int | None] = (0, 0, None)

    @property
    def label(self) -> str:
        where = " > ".join(self.path)
        return f"{where}: {self.desc}" if self.desc else where


class NestedProgress:
    """The inner calls of one pool's workers, as the parent sees them.

    The backend's manager thread calls :meth:`event`, :meth:`chunk_done` and
    :meth:`worker_gone`; they only queue (the manager never waits on a terminal). A thread of
    this object's own makes, updates and closes the lines. In a process that is itself a worker
    nothing is drawn: the frames go up to its own parent, the worker's name added to their path,
    and a line closed here (its worker died) is sent up as ended.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lines: dict[tuple[Any, Any], _Line] = {}
        #: Lines closed here before their call ended (worker gone, outer task over): later
        #: frames of theirs are dropped instead of opening a new line.
        self._gone: set[tuple[Any, Any]] = set()
        self._queue: list[tuple[Any, ...]] = []
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._busy = False
        self._token = id(self)

    def __bool__(self) -> bool:
        return bool(self._lines)

    # -- the manager thread --------------------------------------------------------------------

    def event(self, w: Any, name: str, payload: bytes | bytearray, cid: int, outer: Any) -> None:
        """A ``P`` frame from worker ``w`` (named ``name``), while it runs chunk ``cid`` of a
        call whose own bar is ``outer``."""
        try:
            key, path, desc, done, failed, total, began, final, why = decode(payload)
        except Exception:  # noqa: BLE001 - a frame we cannot read is not worth a failure
            return
        ident = (w, key)
        if ident in self._gone:
            if final:
                self._gone.discard(ident)
            return
        line = self._lines.get(ident)
        if line is None:
            line = self._lines[ident] = _Line((name, *path), desc, began, cid)
        line.last = (done, failed, total)
        if final:
            del self._lines[ident]
        self._pass(w, key, line, outer, final, why)

    def chunk_done(self, w: Any, cid: int) -> None:
        """Worker ``w`` handed back chunk ``cid``: close the lines its tasks left open."""
        for ident, line in list(self._lines.items()):
            if ident[0] is w and line.cid == cid:
                self._end(ident, line, "its task ended first")

    def worker_gone(self, w: Any, why: str) -> None:
        for ident, line in list(self._lines.items()):
            if ident[0] is w:
                self._end(ident, line, why)
        self._gone = {ident for ident in self._gone if ident[0] is not w}

    def close(self) -> None:
        """The pool is shutting down: close every line."""
        for ident, line in list(self._lines.items()):
            self._end(ident, line, "the pool shut down")
        self._gone.clear()

    def _end(self, ident: tuple[Any, Any], line: _Line, why: str) -> None:
        del self._lines[ident]
        self._gone.add(ident)
        self._pass(ident[0], ident[1], line, None, True, why)

    def _pass(
        self, w: Any, key: Any, line: _Line, outer: Any, final: bool, why: str | None
    ) -> None:
        """Draw the line's news here, or send it up when this process is a worker itself."""
        send = in_worker()
        if send is None:
            self._post((line, outer, final, why))
            return
        # Keys are unique per worker of this pool; above, they must be unique per this worker.
        key = (self._token, id(w), key)
        try:
            send(encode(key, line.path, line.desc, *line.last, line.began, final, why))
        except OSError:
            pass  # our parent is gone: this worker ends soon

    def _post(self, item: tuple[Any, ...]) -> None:
        with self._cond:
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self._name}-nested-progress", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 2.0) -> None:
        """Wait until what was queued so far is drawn (a task's inner lines before its result)."""
        with self._cond:
            if self._thread is None:
                return
            self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    # -- the drawing thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                self._busy = True
                items, self._queue = self._queue, []
            for line, outer, final, why in items:
                try:
                    self._show(line, outer, final, why)
                except Exception:  # noqa: BLE001 - a display that fails must not end us
                    pass

    @staticmethod
    def _show(line: _Line, outer: Any, final: bool, why: str | None) -> None:
        done, failed, total = line.last
        if line.bar is None:
            if _display is None:
                return
            line.bar = _display(line.label, total, line.began, outer)
        line.bar.show(done, failed, total)
        if final:
            line.bar.close(why=why)
