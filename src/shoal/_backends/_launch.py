"""Starting worker processes: forked from a zygote (fork, forkserver) or spawned (spawn).

Under fork a pool first forks one clean **zygote**, before any of its own threads exist, and
every worker, first or replacement, is forked from it (see ``_zygote``). Under forkserver the
zygote is a fresh interpreter instead, shoal's own fork server. Under spawn each worker is a fresh
interpreter (see ``_spawn``). No worker ever imports the parent's ``__main__``.

Either way a launcher hands the manager a :class:`WorkerHandle` and the parent's ends of four
pipes: one to send frames on, one to read results from, and the worker's stdout and stderr (its
fds 1 and 2 are these pipes, so C-level writes and faulthandler dumps are caught too). End of
file on the result pipe is the moment a worker dies (only the worker holds its write end); its
exit status follows from the launcher.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
from typing import Any

from shoal._backends._spawn import SharedSlots, spawn_child, tracker_fd
from shoal._backends._worker import prepare_for_forks
from shoal._backends._zygote import (
    NAME_MAX,
    REPORT,
    REQUEST,
    RETIRE,
    direct_worker,
    zygote_main,
)

__all__ = ["SpawnLauncher", "WorkerHandle", "ZygoteLauncher", "make_launcher"]


class _Child:
    """A spawned worker's ``subprocess.Popen``, seen as a ``multiprocessing.Process``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


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


class SpawnLauncher:
    """Starts each worker as a fresh interpreter (the spawn start method)."""

    fileno: int | None = None

    def __init__(self, slots: SharedSlots, name: str) -> None:
        self._slots = slots
        self._name = name
        self._count = 0
        self._tracker = tracker_fd()

    def launch(self, slot: int) -> tuple[WorkerHandle, list[int]]:
        self._count += 1
        handle = WorkerHandle(slot, f"{self._name}Worker-{self._count}")
        child, parent = _new_pipes()
        keep = [*child, self._slots.fd] + ([self._tracker] if self._tracker is not None else [])
        payload = {
            "role": "worker",
            "name": handle.name,
            "fds": child,
            "slot": slot,
            "slots_fd": self._slots.fd,
            "slots_len": self._slots.length,
            "parent": os.getpid(),
            "tracker_fd": self._tracker,
        }
        try:
            popen = spawn_child(payload, keep)
        except BaseException:
            _close_all(parent)
            raise
        finally:
            _close_all(child)
        handle._process = _Child(popen)
        handle.pid = popen.pid
        return handle, parent

    #: Spawned workers are never forked from this process.

    def launch_direct(  # pragma: no cover
        self, slot: int, first_frame: bytes, others: list[int] | None = None
    ) -> tuple[WorkerHandle, list[int], list[tuple[WorkerHandle, list[int]]]]:
        raise NotImplementedError("spawned workers are never forked from the pool's process")

    def read_reports(self) -> list[tuple[bytes, int, int, int]]:
        return []

    def retire(self) -> None:
        pass  # no zygote

    def zygote_lost(self) -> None:  # pragma: no cover - no zygote here
        pass

    def kill(self) -> None:
        pass  # no zygote

    never_started = False

    def respawn(self) -> int:  # pragma: no cover - no zygote here
        raise NotImplementedError("spawned workers have no zygote")

    def close(self) -> None:
        pass


class ZygoteLauncher:
    """Forks every worker from one clean, single-threaded zygote process."""

    def __init__(
        self,
        context: Any,
        slots: SharedSlots,
        name: str,
        spawned: bool,
        deferred: bool = False,
        threads: int | None = None,
    ) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        tracker = tracker_fd() if spawned else _inherited_tracker_fd()
        keep = [tracker] if tracker is not None else []
        self._context = context
        self._slots = slots
        self._keep = keep
        self._threads = threads
        self._popen: subprocess.Popen[bytes] | None = None
        self._zygote: Any = None
        #: Under fork with a first worker forked directly, that worker forks the zygote (one
        #: fork less in this process, before the first task): its end of the socket waits here.
        self._zygote_sock: socket.socket | None = None
        #: The zygote's pid, when it is not this process's child (it says so in an ``H`` report).
        self._zygote_pid: int | None = None
        self._deferred = deferred and not spawned
        self._tracker = tracker
        if deferred and not spawned:
            self._zygote_sock = child_sock
        elif spawned:
            self._popen = self._spawn_zygote(child_sock)
        else:
            self._zygote = context.Process(
                target=zygote_main,
                args=(child_sock, slots.view, keep, threads),
                name=f"{name}Zygote",
                daemon=False,
            )
            self._zygote.start()
        if self._zygote_sock is None:
            child_sock.close()
        parent_sock.setblocking(False)
        self._sock = parent_sock
        self.fileno: int | None = parent_sock.fileno()
        self._name = name
        self._count = 0
        self._by_slot: dict[int, WorkerHandle] = {}
        self._by_pid: dict[int, WorkerHandle] = {}
        self._early_exits: dict[int, int] = {}
        self._retired = False
        self._killed = False

    def retire(self) -> None:
        """Tell the zygote no more workers will be asked for: it ends as soon as its last
        worker has, so close() need not wait for its exit after theirs."""
        if self._retired:
            return
        self._retired = True
        try:
            self._sock.setblocking(True)
            self._sock.send(REQUEST.pack(RETIRE))
        except OSError:
            pass  # gone already: close() finds it ended
        finally:
            self._sock.setblocking(False)

    def kill(self) -> None:
        """Terminate: end the zygote now, its exit overlapping its workers' rather than
        following theirs. Its workers die with it (their parent-death signal); no exit status
        comes for them any more, so the pool waits on their pidfds instead. Only retires it
        while its pid is still unknown (its first report not read yet)."""
        self.retire()
        if self._killed or self.fileno is None:
            return  # once; and not after its end was read (its pid may be another's by then)
        self._killed = True
        pid = self._zygote_pid
        if self._popen is not None:
            pid = self._popen.pid
        elif self._zygote is not None:
            pid = self._zygote.pid
        if pid is None:
            return
        try:
            # Still alive: its socket's end of file, which its exit brings, is not read yet.
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def launch(self, slot: int) -> tuple[WorkerHandle, list[int]]:
        if self._retired:
            raise OSError("the zygote was told the pool wants no more workers")
        self._count += 1
        handle = WorkerHandle(slot, f"{self._name}Worker-{self._count}")
        child, parent = _new_pipes()
        try:
            self._sock.setblocking(True)
            socket.send_fds(self._sock, [_request(slot, handle.name)], child)
        except OSError:
            _close_all(parent)
            raise
        finally:
            self._sock.setblocking(False)
            _close_all(child)
        self._by_slot[slot] = handle
        return handle, parent

    def _spawn_zygote(self, child_sock: socket.socket) -> subprocess.Popen[bytes]:
        """A zygote that is a fresh interpreter (forkserver's, or a stand-in, see respawn())."""
        payload = {
            "role": "zygote",
            "sock": child_sock.fileno(),
            "slots_fd": self._slots.fd,
            "slots_len": self._slots.length,
            "tracker_fd": self._tracker,
            "threads": self._threads,
        }
        return spawn_child(payload, [child_sock.fileno(), self._slots.fd, *self._keep])

    @property
    def never_started(self) -> bool:
        """The zygote a first worker was to fork never said it exists (that worker died
        first): respawn() can stand in for it."""
        return self._deferred and self._zygote_pid is None and self._popen is None

    def respawn(self) -> int:
        """Start a zygote that is a fresh interpreter in place of one that never started (the
        pool's process has threads now: it cannot fork one). Its workers, as under forkserver,
        do not inherit the parent's state; functions of ``__main__`` still reach them by value.
        The requests the lost one never read go with its socket: their workers never started,
        and the manager replaces them as it does dead workers. Returns the new socket's fd."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._popen = self._spawn_zygote(child_sock)
        finally:
            child_sock.close()
        old, self._sock = self._sock, parent_sock
        parent_sock.setblocking(False)
        self.fileno = parent_sock.fileno()
        old.close()  # frees the pipe ends in the requests it held: those workers end at once
        for handle in list(self._by_slot.values()):
            if handle._exitcode is None:
                handle._set_exitcode(None)
        self._by_slot.clear()
        return self.fileno

    def launch_direct(
        self, slot: int, first_frame: bytes, others: list[int] | None = None
    ) -> tuple[WorkerHandle, list[int], list[tuple[WorkerHandle, list[int]]]]:
        """Fork a worker from this process itself, not from the zygote. Only while this process
        has no thread of the pool's yet, and only from the main thread: the worker's parent-death
        signal follows the thread that forked it. ``first_frame``, its ``I`` frame, goes with the
        fork: it starts (and forks the zygote) without waiting for this process to write it.

        ``others``: slots of workers the zygote this worker forks is to fork as soon as it
        exists, without waiting for a request from this process: their pipes ride along with
        the fork. Returns the first worker's handle and fds, then each other's."""
        self._count += 1
        handle = WorkerHandle(slot, f"{self._name}Worker-{self._count}")
        child, parent = _new_pipes()
        zygote_sock, self._zygote_sock = self._zygote_sock, None
        ahead: list[tuple[int, str, list[int]]] = []  # (slot, name, child ends): the zygote's
        extra: list[tuple[WorkerHandle, list[int]]] = []
        if zygote_sock is not None:
            for other in others or ():
                self._count += 1
                other_handle = WorkerHandle(other, f"{self._name}Worker-{self._count}")
                other_child, other_parent = _new_pipes()
                ahead.append((other, other_handle.name, other_child))
                extra.append((other_handle, other_parent))
                self._by_slot[other] = other_handle  # its pid comes in the zygote's P report
        prepare_for_forks()  # once per process: the worker and its zygote find libc loaded
        try:
            process = self._context.Process(
                target=direct_worker,
                args=(
                    child, self._slots.view, slot, self._keep, os.getpid(), zygote_sock,
                    f"{self._name}Zygote", self._threads, first_frame, ahead,
                ),
                name=handle.name,
                daemon=False,
            )
            process.start()
        except BaseException:
            _close_all(parent)
            for other_handle, other_parent in extra:
                self._by_slot.pop(other_handle.slot, None)
                _close_all(other_parent)
            raise
        finally:
            _close_all(child)
            for *_, other_child in ahead:
                _close_all(other_child)
            if zygote_sock is not None:
                zygote_sock.close()
        handle._process = process
        handle.pid = process.pid
        return handle, parent, extra

    def read_reports(self) -> list[tuple[bytes, int, int, int]]:
        """Read what the zygote said: starts (``P``) and exits (``X``); updates the handles.

        An empty report with kind ``Z`` means the zygote itself is gone."""
        reports = []
        while True:
            try:
                data = self._sock.recv(REPORT.size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                reports.append((b"Z", -1, -1, -1))
                self.fileno = None
                break
            kind, slot, pid, code = REPORT.unpack(data)
            if kind == b"H":
                self._zygote_pid = pid
            elif kind == b"P":
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
        if self._popen is None and self._zygote is None and self._zygote_pid is None:
            try:  # a first worker's zygote may have said its pid without being heard yet
                self.read_reports()
            except OSError:
                pass
        try:
            self._sock.close()
        except OSError:
            pass
        if self._popen is not None:
            try:
                self._popen.wait(5)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        elif self._zygote is not None:
            self._zygote.join(5)
            if self._zygote.exitcode is None:
                self._zygote.kill()
                self._zygote.join()
        else:
            if self._zygote_sock is not None:  # the first worker never started
                self._zygote_sock.close()
                self._zygote_sock = None
            if self._zygote_pid is not None:
                _wait_foreign(self._zygote_pid, 5.0)


def _request(slot: int, name: str) -> bytes:
    """A launch request for the zygote: the slot, then the worker's name."""
    return REQUEST.pack(slot) + name.encode()[:NAME_MAX]


def _wait_foreign(pid: int, timeout: float) -> None:
    """Wait for a process that is not our child to end (the zygote a first worker forked: it
    ends, taking its workers along, once it sees the end of its socket); SIGKILL it after
    ``timeout``. A pidfd tells of its end even while it is a zombie of its parent."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return  # gone already, or no pidfds: it still ends by itself at the end of its socket
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except (AttributeError, OSError):
                pass
            select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    try:  # ours after all if its parent died and we are the reaper (PID 1 in a container)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _inherited_tracker_fd() -> int | None:
    """The resource tracker's fd, if this process has one (a forked zygote inherits it)."""
    try:
        from multiprocessing import resource_tracker

        fd = getattr(resource_tracker._resource_tracker, "_fd", None)  # private, stable since 3.8
        return int(fd) if fd is not None else None
    except ImportError:  # pragma: no cover
        return None


def make_launcher(
    context: Any,
    slots: SharedSlots,
    name: str,
    direct_first: bool = False,
    threads: int | None = None,
) -> SpawnLauncher | ZygoteLauncher:
    """A forked zygote under fork, a spawned one under forkserver, fresh interpreters under
    spawn. ``direct_first``: under fork, the caller forks the first worker itself at once with
    ``launch_direct``, and that worker forks the zygote."""
    method = context.get_start_method()
    if method == "fork":
        return ZygoteLauncher(
            context, slots, name, spawned=False, deferred=direct_first, threads=threads
        )
    if method == "forkserver":
        return ZygoteLauncher(context, slots, name, spawned=True, threads=threads)
    return SpawnLauncher(slots, name)
