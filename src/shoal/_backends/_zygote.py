"""The zygote: a clean, single-threaded process that forks every worker of one pool.

Forking a process that already runs threads can deadlock the child (a lock held by another thread
at fork time stays held for ever: gh-90622, gh-84559). A pool's workers are therefore forked
from its zygote, never from the pool's own (threaded) process. Under the fork start method the
zygote is forked once, before the pool starts any thread; under forkserver it is a fresh
interpreter (spawned), so it shares nothing with its parent at all.

Protocol, on a SEQPACKET socket: a request is a slot number and the worker's name, with four
fds (SCM_RIGHTS: the worker's task, result, stdout and stderr pipe ends); reports are
``(kind, slot, pid, code)``: ``P`` a worker started, ``X`` a worker exited with that code
(multiprocessing's convention: negative for a signal); ``H`` first, with the zygote's own pid
(under fork it may be a child of the pool's first worker, not of the pool). A request for
slot ``RETIRE`` (no fds) says the pool is closing and wants no more workers: the zygote ends
once its last worker has. End of file on the socket means the pool's owner is gone (or done
with it): the zygote kills the workers it still has and exits.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

from shoal._backends._native_threads import cap_native_threads
from shoal._backends._shared_init import flush_multiprocessing
from shoal._backends._worker import (
    prepare_for_forks,
    redirect_output,
    serve,
    set_parent_death_signal,
)

__all__ = [
    "NAME_MAX",
    "REPORT",
    "REQUEST",
    "RETIRE",
    "close_inherited_fds",
    "direct_worker",
    "zygote_main",
]

REQUEST = struct.Struct("!i")  # slot, then the worker's name; pipe ends ride as SCM_RIGHTS
#: Longest worker name a request carries (bytes, UTF-8); longer ones are cut.
NAME_MAX = 200
#: The slot of the request that says no more workers will be asked for: the zygote ends as
#: soon as its last worker has (while the pool waits for them, not after).
RETIRE = -1
REPORT = struct.Struct("!ciii")  # kind (P: started, X: exited), slot, pid, exit code


def close_inherited_fds(keep: list[int]) -> None:
    """Close every fd but 0, 1, 2 and ``keep``: fds inherited from the parent (other pools'
    pipes and zygote sockets) must not stay open here, or their owners would not see end of
    file when they expect it."""
    low = 0
    for fd in sorted({0, 1, 2, *keep}):
        if low < fd:  # closerange(n, n) would mean "to the last fd" to close_range(2)
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def direct_worker(
    fds: list[int],
    view: Any,
    slot: int,
    keep_fds: list[int],
    parent: int,
    zygote_sock: socket.socket | None = None,
    zygote_name: str = "",
    threads: int | None = None,
    first_frame: bytes | None = None,
    ahead: list[tuple[int, str, list[int]]] | None = None,
) -> None:
    """A pool's first worker, forked by the pool's own constructor in the main thread (before
    the pool has any thread) rather than by its zygote: one fork less before the first task.

    With ``zygote_sock`` it also forks the pool's zygote, so that the pool's process forks
    once, not twice: a fork costs the parent more than the call (its pages become
    copy-on-write, and every page it writes next is copied). It does so first thing, before
    anything else here (the zygote, which closes what it inherited and sets itself up, then
    forks the pool's other first workers while this one gets ready: they are up about a
    millisecond and a half sooner than when this worker forked it after its ready frame), and
    so before any code of the user's runs here or a thread starts: the zygote holds the state
    of one forked by the pool itself, with the pool's own stdout and stderr on fds 1 and 2.
    ``ahead``: the pool's other first workers, ``(slot, name, pipe ends)``, that the zygote
    forks as soon as it exists (no request from the pool to wait for)."""
    gc.freeze()
    if zygote_sock is not None:
        _fork_zygote(
            zygote_sock, view, keep_fds, zygote_name, threads, (os.dup(1), os.dup(2)), ahead or []
        )
    task_r, result_w, out_w, err_w = fds

    def setup() -> None:
        close_inherited_fds([*fds, *keep_fds])
        set_parent_death_signal(parent)
        redirect_output(out_w, err_w)

    code = serve(task_r, result_w, view, slot, first_frame, setup)
    flush_multiprocessing()
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        sys.exit(code)


def _fork_zygote(
    sock: socket.socket,
    view: Any,
    keep_fds: list[int],
    name: str,
    threads: int | None,
    std: tuple[int, int],
    ahead: list[tuple[int, str, list[int]]],
) -> None:
    """Fork the zygote from this (first) worker; it is not our business after that: it never
    exits before the pool closes its socket, and then this worker exits as well (should it
    not, the zygote stays a zombie until it does). No parent-death signal for it: it must
    outlive this worker; it ends at the end of its socket, which the pool's death brings.
    ``std``: the pool's stdout and stderr, for the zygote's fds 1 and 2 (holding this worker's
    output pipes would keep their ends open after this worker died). ``ahead``: workers it
    forks at once, before it reads any request."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(std[0], 1)
            os.dup2(std[1], 2)
            multiprocessing.current_process().name = name
            zygote_main(sock, view, keep_fds, threads, ahead)
            code = 0
        finally:
            os._exit(code)
    sock.close()
    for fd in std:
        os.close(fd)
    for *_, theirs in ahead:
        for fd in theirs:
            os.close(fd)


def zygote_main(
    sock: socket.socket,
    view: Any,
    keep_fds: list[int],
    threads: int | None = None,
    ahead: list[tuple[int, str, list[int]]] | None = None,
) -> None:
    """The zygote: forks a worker per request and reports starts and exits.

    Args:
        sock: its end of the SEQPACKET socket to the pool (requests in, reports out).
        view: the workers' shared slot array (an int64 memoryview, inherited by forks).
        keep_fds: fds besides its own that must stay open (the resource tracker's).
        threads: the native thread cap of its workers (see ``_native_threads``): applied here
            once, so workers forked later inherit it at no cost of theirs.
        ahead: ``(slot, name, pipe ends)`` of workers to fork at once, as if requested (the other
            first workers of a pool whose first worker forked this zygote).
    """
    gc.freeze()  # never collect (and so never close) objects inherited from the parent
    prepare_for_forks()
    cap_native_threads(threads, now=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = sock.fileno()
    wake_r, wake_w = os.pipe()
    ahead = ahead or []
    close_inherited_fds([ctl, wake_r, wake_w, *keep_fds, *(fd for *_, fds in ahead for fd in fds)])
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    _send_report(sock, b"H", -1, os.getpid(), 0)  # the pool may not be our parent: our pid
    for i, (slot, name, fds) in enumerate(ahead):
        later = [fd for *_, theirs in ahead[i + 1 :] for fd in theirs]  # not this one's to hold
        children.add(_fork_worker(sock, (wake_r, wake_w, *later), view, slot, name, fds))
    retiring = False  # told no more workers will be asked for: end once the last has exited
    while not (retiring and not children):
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
                msg, fds, _flags, _addr = socket.recv_fds(sock, REQUEST.size + NAME_MAX, 4)
            except OSError:
                msg = b""
                fds = []
            if not msg:
                break  # our pool's owner is gone (or closed us): end, and take the workers along
            (slot,) = REQUEST.unpack_from(msg)
            if slot == RETIRE:
                retiring = True
                continue
            name = msg[REQUEST.size :].decode(errors="replace")
            children.add(_fork_worker(sock, (wake_r, wake_w), view, slot, name, fds))
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


def _fork_worker(
    sock: socket.socket,
    zygote_fds: tuple[int, ...],
    view: Any,
    slot: int,
    name: str,
    fds: list[int],
) -> int:
    """Fork the worker ``name`` of ``slot`` on its pipe ends ``fds``; report it (``P``),
    return its pid. Closes ``fds`` here; the worker closes ``zygote_fds``, the zygote's own."""
    task_r, result_w, out_w, err_w = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            for fd in zygote_fds:
                os.close(fd)
            # What logging's processName and multiprocessing.current_process() show: the
            # worker's own name, as in a process multiprocessing starts, not the zygote's.
            multiprocessing.current_process().name = name
            zygote = os.getppid()

            def setup() -> None:
                set_parent_death_signal(zygote)
                redirect_output(out_w, err_w)

            code = serve(task_r, result_w, view, slot, None, setup)
        finally:
            try:
                # os._exit skips what a multiprocessing child does at exit: flushing the queues
                # it wrote to, its finalizers.
                flush_multiprocessing()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    for fd in fds:
        os.close(fd)
    _send_report(sock, b"P", slot, pid, 0)
    return pid


def _send_report(sock: socket.socket, kind: bytes, slot: int, pid: int, code: int) -> None:
    try:
        sock.send(REPORT.pack(kind, slot, pid, code))
    except OSError:
        pass  # the parent is gone; the loop ends at the next read


