"""Starting worker processes: from a zygote under fork, through ``multiprocessing`` otherwise.

Forking a process that already runs threads can deadlock the child (a lock held by another thread
at fork time stays held for ever: gh-90622, gh-84559). So under fork a pool first forks one clean
**zygote**, before any of its own threads exist, and every worker, first or replacement, is forked
from that single-threaded zygote. Under spawn and forkserver the stdlib's ``Process`` starts them.

Either way a launcher hands the manager a :class:`WorkerHandle` and the parent's ends of four
pipes: one to send frames on, one to read results from, and the worker's stdout and stderr
(its fds 1 and 2 are these pipes, so C-level writes and faulthandler dumps are caught too). End of file on the result pipe is the moment a
worker dies (only the worker holds its write end); its exit status follows from the launcher.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import struct
import sys
import threading
from typing import Any

from shoal._backends._worker import serve, set_parent_death_signal

__all__ = ["ProcessLauncher", "WorkerHandle", "ZygoteLauncher", "make_launcher"]

_REQUEST = struct.Struct("!i")  # slot; the two pipe ends ride along as SCM_RIGHTS
_REPORT = struct.Struct("!ciii")  # kind (P: started, X: exited), slot, pid, exit code


class WorkerHandle:
    """What the pool knows of one worker process (``multiprocessing.Process``-like)."""

    def __init__(self, slot: int, name: str) -> None:
        self.slot = slot
        self.name = name
        self._pid: int | None = None
        # Set once the pid is known or the worker is gone: a zygote reports the pid a moment
        # after launch(), and code written for multiprocessing reads ``pool._pool[i].pid``.
        self._known = threading.Event()
        self._exitcode: int | None = None
        self._ended = threading.Event()
        self._process: Any = None  # the multiprocessing.Process, when one started it

    @property
    def pid(self) -> int | None:
        return self._pid

    @pid.setter
    def pid(self, value: int | None) -> None:
        self._pid = value
        if value is not None:
            self._known.set()

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until the pid is known or the worker has ended; True if it is known."""
        self._known.wait(timeout)
        return self._pid is not None

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None and self._process is not None:
            code = self._process.exitcode
            if code is not None:
                self._set_exitcode(code)
        return self._exitcode

    def _set_exitcode(self, code: int | None) -> None:
        self._exitcode = code
        self._ended.set()
        self._known.set()
        if self._process is not None:
            self._process.join(0)  # reap it and drop it from multiprocessing's children

    def is_alive(self) -> bool:
        return not self._ended.is_set() and self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        if self._process is not None:
            self._process.join(timeout)
            if self._process.exitcode is not None:
                self._set_exitcode(self._process.exitcode)
        else:
            self._ended.wait(timeout)

    def _signal(self, sig: int) -> None:
        if self.pid is not None and self._exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def __repr__(self) -> str:
        state = "alive" if self._exitcode is None else f"exitcode={self._exitcode}"
        return f"<WorkerHandle {self.name} pid={self.pid} {state}>"


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
        setattr(sys, name, open(fd, "w", buffering=1, errors="backslashreplace", closefd=False))


def _new_pipes() -> tuple[list[int], list[int]]:
    """(child ends, parent ends) of the task, result, stdout and stderr pipes."""
    task_r, task_w = os.pipe()
    result_r, result_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    return [task_r, result_w, out_w, err_w], [task_w, result_r, out_r, err_r]


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _process_entry(conns: list[Any], slots: Any, slot: int, parent: int | None) -> None:
    """Entry point of a worker started by ``multiprocessing`` (spawn, forkserver)."""
    set_parent_death_signal(parent)
    task_fd, result_fd, out_fd, err_fd = (os.dup(c.fileno()) for c in conns)
    for c in conns:
        c.close()
    redirect_output(out_fd, err_fd)
    view = memoryview(slots).cast("B").cast("q")
    code = serve(task_fd, result_fd, view, slot)
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        sys.exit(code)


class ProcessLauncher:
    """Starts each worker as a ``multiprocessing.Process`` of the given context."""

    fileno: int | None = None

    def __init__(self, context: Any, slots: Any, name: str) -> None:
        self._context = context
        self._slots = slots
        self._name = name
        self._count = 0

    def launch(self, slot: int) -> tuple[WorkerHandle, list[int]]:
        from multiprocessing.connection import Connection

        self._count += 1
        handle = WorkerHandle(slot, f"{self._name}Worker-{self._count}")
        child, parent = _new_pipes()
        conns = [Connection(fd) for fd in child]
        spawn = self._context.get_start_method() == "spawn"
        try:
            process = self._context.Process(
                target=_process_entry,
                args=(conns, self._slots, slot, os.getpid() if spawn else None),
                name=handle.name,
                daemon=False,
            )
            process.start()
        except BaseException:
            _close_all(parent)
            raise
        finally:
            for c in conns:
                c.close()
        handle._process = process
        handle.pid = process.pid
        return handle, parent

    def read_reports(self) -> list[tuple[bytes, int, int, int]]:
        return []

    def close(self) -> None:
        pass


def _zygote_main(sock: socket.socket, slots: Any, keep_fds: list[int]) -> None:
    """The zygote: forks a worker per request and reports starts and exits."""
    gc.freeze()  # never collect (and so never close) objects inherited from the parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = sock.fileno()
    wake_r, wake_w = os.pipe()
    keep = sorted({0, 1, 2, ctl, wake_r, wake_w, *keep_fds})
    # Drop every fd inherited from the parent (other pools' pipes and zygote sockets), so their
    # owners see end of file when they expect it.
    low = 0
    for fd in keep:
        if low < fd:  # closerange(n, n) would mean "to the last fd" to close_range(2)
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    view = memoryview(slots).cast("B").cast("q")
    children: set[int] = set()
    while True:
        try:
            ready, _, _ = select.select([ctl, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _send_report(sock, b"X", -1, pid, os.waitstatus_to_exitcode(status))
        if ctl in ready:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, _REQUEST.size, 4)
            except OSError:
                msg = b""
                fds = []
            if not msg:
                break  # our pool's owner is gone (or closed us): end, and take the workers along
            (slot,) = _REQUEST.unpack(msg)
            task_r, result_w, out_w, err_w = fds
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    sock.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    set_parent_death_signal(os.getppid())
                    redirect_output(out_w, err_w)
                    code = serve(task_r, result_w, view, slot)
                finally:
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    finally:
                        os._exit(code)
            _close_all(fds)
            children.add(pid)
            _send_report(sock, b"P", slot, pid, 0)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _send_report(sock: socket.socket, kind: bytes, slot: int, pid: int, code: int) -> None:
    try:
        sock.send(_REPORT.pack(kind, slot, pid, code))
    except OSError:
        pass  # the parent is gone; the loop ends at the next read


class ZygoteLauncher:
    """Forks every worker from one clean, single-threaded zygote process."""

    def __init__(self, context: Any, slots: Any, name: str) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = []
        try:
            from multiprocessing import resource_tracker

            # Workers that make semaphores or shared memory report them to the resource tracker
            # through this inherited fd (private, stable since 3.8).
            tracker_fd = getattr(resource_tracker._resource_tracker, "_fd", None)
            if tracker_fd is not None:
                keep.append(tracker_fd)
        except ImportError:  # pragma: no cover
            pass
        self._zygote = context.Process(
            target=_zygote_main,
            args=(child_sock, slots, keep),
            name=f"{name}Zygote",
            daemon=False,
        )
        self._zygote.start()
        child_sock.close()
        parent_sock.setblocking(False)
        self._sock = parent_sock
        self.fileno: int | None = parent_sock.fileno()
        self._name = name
        self._count = 0
        self._by_slot: dict[int, WorkerHandle] = {}
        self._by_pid: dict[int, WorkerHandle] = {}
        self._early_exits: dict[int, int] = {}

    def launch(self, slot: int) -> tuple[WorkerHandle, list[int]]:
        self._count += 1
        handle = WorkerHandle(slot, f"{self._name}Worker-{self._count}")
        child, parent = _new_pipes()
        try:
            self._sock.setblocking(True)
            socket.send_fds(self._sock, [_REQUEST.pack(slot)], child)
        except OSError:
            _close_all(parent)
            raise
        finally:
            self._sock.setblocking(False)
            _close_all(child)
        self._by_slot[slot] = handle
        return handle, parent

    def read_reports(self) -> list[tuple[bytes, int, int, int]]:
        """Read what the zygote said: starts (``P``) and exits (``X``); updates the handles.

        An empty report with kind ``Z`` means the zygote itself is gone."""
        reports = []
        while True:
            try:
                data = self._sock.recv(_REPORT.size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                reports.append((b"Z", -1, -1, -1))
                self.fileno = None
                break
            kind, slot, pid, code = _REPORT.unpack(data)
            if kind == b"P":
                handle = self._by_slot.pop(slot, None)
                if handle is not None:
                    handle.pid = pid
                    self._by_pid[pid] = handle
                    if pid in self._early_exits:
                        handle._set_exitcode(self._early_exits.pop(pid))
            else:
                exited = self._by_pid.pop(pid, None)
                if exited is not None:
                    exited._set_exitcode(code)
                else:
                    self._early_exits[pid] = code
            reports.append((kind, slot, pid, code))
        return reports

    def zygote_lost(self) -> None:
        """The zygote died: no exit status will come for its workers."""
        for handle in list(self._by_pid.values()) + list(self._by_slot.values()):
            if handle._exitcode is None:
                handle._set_exitcode(None)
        self._by_pid.clear()
        self._by_slot.clear()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
        self._zygote.join(5)
        if self._zygote.exitcode is None:
            self._zygote.kill()
            self._zygote.join()


def make_launcher(context: Any, slots: Any, name: str) -> ProcessLauncher | ZygoteLauncher:
    """A zygote under fork, ``multiprocessing.Process`` under spawn and forkserver."""
    if context.get_start_method() == "fork":
        return ZygoteLauncher(context, slots, name)
    return ProcessLauncher(context, slots, name)
