"""Fresh interpreters for workers (spawn) and zygotes (forkserver), started without
``multiprocessing``'s bootstrap: the child never imports the parent's ``__main__``.

``multiprocessing``'s spawn re-runs the main script in every child (as ``__mp_main__``), so a
script without an ``if __name__ == "__main__":`` guard starts pools inside its own workers. Here
the child is ``python -c`` with a tiny bootstrap that reads a plain pickle of what it needs
(``sys.path``, the authentication key, the resource tracker's fd, its fds) from a pipe; functions
of ``__main__`` arrive by value (cloudpickle), so nothing needs the script.
"""

from __future__ import annotations

import mmap
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Any

__all__ = ["SharedSlots", "child_main", "spawn_child", "tracker_fd"]

_BOOTSTRAP = (
    "import os, pickle, sys\n"
    "with os.fdopen({fd}, 'rb') as f:\n"
    "    d = pickle.load(f)\n"
    "sys.path[:] = d['sys_path']\n"
    "from shoal._backends._spawn import child_main\n"
    "child_main(d)\n"
)


class SharedSlots:
    """An int64 array in shared memory that workers write and the parent reads.

    Backed by a memfd (or an unlinked temporary file), so it can be inherited by fork and passed
    to a fresh interpreter by fd; nothing is left in /dev/shm.
    """

    def __init__(self, length: int, fd: int | None = None) -> None:
        size = 8 * max(length, 1)
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("shoal-slots", 0)
            else:  # pragma: no cover - not Linux
                handle, path = tempfile.mkstemp(prefix="shoal-slots-")
                os.unlink(path)
                fd = handle
            os.ftruncate(fd, size)
        self.fd = fd
        self.length = length
        self._map = mmap.mmap(fd, size)
        self.view = memoryview(self._map).cast("q")

    def close(self) -> None:
        self.view.release()
        self._map.close()
        os.close(self.fd)


def _interpreter_flags() -> list[str]:
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    return list(flags()) if flags is not None else []


def spawn_child(payload: dict[str, Any], pass_fds: list[int]) -> subprocess.Popen[bytes]:
    """Start ``python -c <bootstrap>`` with ``pass_fds`` open and ``payload`` on a pipe."""
    from multiprocessing import process

    read_end, write_end = os.pipe()
    payload = {
        **payload,
        "sys_path": list(sys.path),
        "authkey": bytes(process.current_process().authkey),
    }
    try:
        child = subprocess.Popen(
            [sys.executable, *_interpreter_flags(), "-c", _BOOTSTRAP.format(fd=read_end)],
            pass_fds=[read_end, *pass_fds],
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
    finally:
        os.close(read_end)
    with os.fdopen(write_end, "wb") as f:
        pickle.dump(payload, f)
    return child


def tracker_fd() -> int | None:
    try:
        from multiprocessing import resource_tracker

        # The parent's resource tracker (private, stable since 3.8): shared memory a worker
        # makes is then tracked, and cleaned up, by the parent's tracker, as under spawn.
        resource_tracker.ensure_running()
        fd = resource_tracker.getfd()
        return int(fd) if fd is not None else None
    except Exception:  # noqa: BLE001 - no tracker: workers start their own if they need one
        return None


def child_main(d: dict[str, Any]) -> None:
    """The bootstrap's second half, in the child."""
    from multiprocessing import process

    process.current_process().authkey = d["authkey"]
    if d.get("name"):
        process.current_process().name = d["name"]  # logging's processName, as in the parent
    tracker = d.get("tracker_fd")
    if tracker is not None:
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._fd = tracker  # type: ignore[attr-defined]
    slots = SharedSlots(d["slots_len"], d["slots_fd"])
    if d["role"] == "zygote":
        import socket

        from shoal._backends._zygote import zygote_main

        sock = socket.socket(fileno=d["sock"])
        zygote_main(
            sock, slots.view, [fd for fd in (tracker,) if fd is not None], d.get("threads")
        )
        return
    from shoal._backends._worker import redirect_output, serve, set_parent_death_signal

    set_parent_death_signal(d["parent"])
    task_fd, result_fd, out_fd, err_fd = d["fds"]
    redirect_output(out_fd, err_fd)
    code = serve(task_fd, result_fd, slots.view, d["slot"])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)

