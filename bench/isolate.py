"""Run one timed run in a forked child, with a hard timeout.

Each run gets a fresh process (no pool, executor or thread left over from another library's
run: joblib's reusable executor, for one, starts anew), its own process group (so a hung pool's
workers are killed with it) and a deadline. A run that overstays is killed and reported as a
timeout, with the child's thread stacks (faulthandler) for the report. The driver only forks
(no threads run in it), so the child starts clean.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["run_isolated"]


def _child(fn: Callable[[], dict[str, Any]], wfd: int, log_path: str, timeout: float) -> None:
    try:
        os.setpgid(0, 0)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        # Before the parent kills us: what every thread was doing.
        faulthandler.dump_traceback_later(max(timeout - 1.0, timeout * 0.9), exit=False)
        try:
            payload = {"status": "ok", **fn()}
        except BaseException as exc:  # noqa: BLE001 - any failure becomes the run's error
            payload = {
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc()[-3000:],
            }
        faulthandler.cancel_dump_traceback_later()
        data = pickle.dumps(payload)
        view = memoryview(data)
        while view:
            view = view[os.write(wfd, view) :]
        os.close(wfd)
    finally:
        os._exit(0)  # no atexit handlers of the parent's, no flushing of its buffers


def _group_members(pgid: int) -> list[str]:
    """Processes still in the run's group once its child has exited: leftovers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(f"{entry}:{name}")
        except (OSError, ValueError, IndexError):
            continue
    return found


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_isolated(fn: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Call ``fn`` in a forked child and return its dict, plus ``status``: "ok", "error"
    (``error``, ``traceback``) or "timeout" (``stacks``: the child's threads). ``leftovers``
    lists processes of the run's group still alive after its child exited."""
    fd, log_path = tempfile.mkstemp(prefix="shoal-bench-", suffix=".log")
    os.close(fd)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(fn, wfd, log_path, timeout)
    os.close(wfd)
    try:
        os.setpgid(pid, pid)
    except (PermissionError, ProcessLookupError):
        pass  # the child did it first
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if ready:
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(rfd)
    if timed_out:
        time.sleep(0.2)  # faulthandler dumped shortly before the deadline; let it land
        _kill_group(pid)
        os.waitpid(pid, 0)
        result: dict[str, Any] = {"status": "timeout", "error": f"no result in {timeout:.0f} s",
                                  "stacks": _tail(log_path)}
    else:
        # The child calls os._exit right after writing; give it a moment, then insist.
        end = time.monotonic() + 5
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > end:
                _kill_group(pid)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        try:
            result = pickle.loads(b"".join(chunks))
        except Exception as exc:  # noqa: BLE001 - the child died before writing it all
            result = {"status": "error", "error": f"child died without a result ({exc!r})",
                      "traceback": _tail(log_path)}
        leftovers = _group_members(pid)
        if leftovers:
            time.sleep(0.2)  # workers on their way out
            leftovers = _group_members(pid)
        if leftovers:
            result["leftovers"] = leftovers
    _kill_group(pid)
    try:
        os.unlink(log_path)
    except OSError:
        pass
    return result
