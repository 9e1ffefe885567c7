"""Tasks that look at how a large argument reached their worker (tests/test_large_buffers.py).

A shared segment is an anonymous memfd of the pool's process, named ``shoal-buffer``: it shows
as ``/memfd:shoal-buffer (deleted)`` among that process's fds and in a worker's memory maps.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

SEGMENT = "/memfd:shoal-buffer"
#: A little over the 1 MiB from which buffers go to shared memory.
SIZE = 2 * 1024 * 1024


def segment_fds(pid: int) -> set[int]:
    """Inodes of the segments process ``pid`` holds open."""
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith(SEGMENT):
                found.add(os.stat(f"/proc/{pid}/fd/{name}").st_ino)
        except OSError:  # closed meanwhile (listdir's own fd, among others)
            pass
    return found


def mapped_segments() -> set[int]:
    """Inodes of the segments mapped in this process."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            if SEGMENT in line:
                found.add(int(line.split()[4]))
    return found


def backing(arr: Any) -> int | None:
    """The inode of the segment ``arr``'s data lies in (zero-copy), or None (a copy of its own)."""
    address = arr.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            if SEGMENT in line:
                fields = line.split()
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= address < high:
                    return int(fields[4])
    return None


def array_probe(arr: Any, i: int) -> tuple[int, int | None]:
    """One element and where the array lives (map over indices with the array bound)."""
    return int(arr[i]), backing(arr)


def item_probe(arr: Any) -> tuple[int, int | None]:
    """The array's sum and where it lives (the array given as an item)."""
    return int(arr.sum()), backing(arr)


def star_probe(arr: Any, i: int) -> tuple[int, int | None]:
    return array_probe(arr, i)


def bound_sum(arr: Any, i: int) -> int:
    return int(arr.sum())


def change_and_sum(arr: Any) -> int:
    """Change the argument in place, as a task may with the copy plain pickle gives it."""
    arr += 1
    return int(arr.sum())


def bytes_probe(data: Any, pool_pid: int, i: int = 0) -> tuple[str, int, str, bool]:
    """Type, length and digest of a large bytes-like argument, and whether the pool's process
    held a shared segment while the task ran."""
    return (
        type(data).__name__,
        len(data),
        hashlib.sha1(data).hexdigest(),
        bool(segment_fds(pool_pid)),
    )


def held_segments(data: Any, pool_pid: int) -> set[int]:
    """The segments the pool's process held open while this task (given ``data``) ran."""
    return segment_fds(pool_pid)


def same(a: Any, b: Any) -> bool:
    return a is b


def die_once(marker: str, arr: Any, i: int) -> tuple[int, int | None]:
    """Kill this worker the first time item 3 runs (``marker`` says it did), while the call's
    array is mapped; afterwards behave like ``array_probe``."""
    if i == 3:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os._exit(9)
    return array_probe(arr, i)
