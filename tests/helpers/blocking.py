"""Tasks that announce they started and then block until the test lets them go, without sleeps:
each writes its pid to a FIFO the test reads, then waits for a shared lock on a file the test
holds exclusively."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Gate:
    """The test's side: a FIFO tasks announce themselves on, and a lock file that holds them."""

    def __init__(self, directory: Path) -> None:
        self.fifo = str(directory / "started")
        self.lock = str(directory / "gate")
        os.mkfifo(self.fifo)
        # Read-write: never blocks, and no end of file between one task's write and the next.
        self._fifo_fd = os.open(self.fifo, os.O_RDWR)
        self._reader = os.fdopen(self._fifo_fd, "r", buffering=1)
        self._lock_fd = os.open(self.lock, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def started(self) -> int:
        """The pid of the next task to start (blocks until one does)."""
        return int(self._reader.readline())

    def open(self) -> None:
        """Let every waiting (and later) task go on."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.open()
        os.close(self._lock_fd)
        self._reader.close()


def announce_and_wait(fifo: str, lock: str, value: int = 0) -> int:
    """Write this process's pid to ``fifo``, wait for ``lock``, return ``value``."""
    with open(fifo, "w") as f:
        f.write(f"{os.getpid()}\n")
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
    return value
