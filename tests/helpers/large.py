"""Tasks that return large results (tests/test_large_results.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np

_barrier: Any = None


def pattern(n: int, seed: int) -> bytes:
    """``n`` bytes that differ from one seed to the next and along their length."""
    block = bytes((seed + i * 7) % 256 for i in range(256))
    return (block * (n // 256 + 1))[:n]


def make(spec: tuple[Any, ...]) -> Any:
    """A result described by ``spec`` (see :func:`expected`, which builds the same in the
    parent): ``("bytes", n, seed)``, ``("bytearray", n, seed)``, ``("array", n, seed, dtype,
    order)``, ``("readonly", n, seed)`` or ``("nested", n, seed)``."""
    kind, n, seed = spec[:3]
    if kind == "bytes":
        return pattern(n, seed)
    if kind == "bytearray":
        return bytearray(pattern(n, seed))
    if kind == "array":
        dtype, order = spec[3], spec[4]
        flat = np.frombuffer(pattern(n, seed), dtype=np.uint8).copy()
        arr = flat.view(dtype)
        if order == "F" and arr.size % 4 == 0 and arr.size:
            arr = np.asfortranarray(arr.reshape(4, -1))
        return arr
    if kind == "readonly":
        arr = np.frombuffer(pattern(n, seed), dtype=np.uint8).copy()
        arr.flags.writeable = False
        return arr
    if kind == "nested":
        return {
            "pair": (make(("array", n, seed, np.float64, "C")), [pattern(n, seed + 1), seed]),
            "tail": [make(("bytearray", n, seed + 2)), {"deep": make(("array", n, seed + 3,
                                                                       np.uint8, "C"))}],
        }
    raise ValueError(f"unknown result kind {kind!r}")


expected = make  # the parent builds the same value to compare with


def init_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def block_after_meeting(i: int, size: int) -> tuple[int, np.ndarray]:
    """``(pid, array)``; the first task on each worker waits until both workers run one, so
    the results provably come from both, at the same time."""
    global _barrier
    if _barrier is not None:
        _barrier.wait(timeout=60)
        _barrier = None
    arr = np.full(size, i % 251, dtype=np.uint8)
    arr[0] = i % 256
    return os.getpid(), arr


def _in_pipe_write(tid: int) -> bool:
    try:
        with open(f"/proc/self/task/{tid}/wchan") as f:
            return "pipe_write" in f.read()
    except OSError:
        return False


def die_while_writing(size: int, once: str | None = None) -> np.ndarray:
    """Return a ``size``-byte array, and SIGKILL this worker once its main thread is blocked
    writing it to the (full) result pipe: the parent then holds part of the frame.

    The watcher polls the kernel's note of where the main thread sleeps; it gives up after 60 s
    (the result then arrives whole and the caller's test fails, saying so). With ``once`` (a
    path), only the first call dies: it creates the file, later calls see it and just return.
    """
    if once is not None:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return np.ones(size, dtype=np.uint8)
    # The task runs on the thread that writes results (not main_thread().native_id, which is
    # stale in a process forked by the zygote on Python 3.11).
    main = threading.get_native_id()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _in_pipe_write(main):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0005)

    threading.Thread(target=watch, daemon=True).start()
    return np.ones(size, dtype=np.uint8)
