"""Tasks that run a pool of their own with ``progress=True`` (tests/test_nested_progress.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import shoal
from shoal._core import _relay


def same(x: int) -> int:
    return x


def inner_threads(n: int) -> int:
    """An inner ThreadPool.map with a bar titled ``inner<n>``."""
    with shoal.ThreadPool(2) as pool:
        return sum(pool.map(same, range(n), progress=f"inner{n}"))


def inner_processes(n: int) -> int:
    """An inner process Pool.map with a bar titled ``middle<n>``, whose tasks run
    :func:`inner_threads`: progress two levels down."""
    with shoal.Pool(2) as pool:
        return sum(pool.map(inner_threads, [n, n + 1], progress=f"middle{n}"))


def inner_map(n: int) -> int:
    """shoal.map inside a worker (it keeps a pool of its own there)."""
    return sum(shoal.map(same, range(n), workers=2, backend="thread", progress=f"inner{n}"))


def frames_for_tiny_items(n: int) -> tuple[int, float, str]:
    """Run ``n`` tiny items with a bar; how many progress frames that sent, how long the inner
    call took, and what kind of bar the worker got."""
    before = _relay.sent
    began = time.monotonic()
    with shoal.ThreadPool(2) as pool:
        result = pool.map_async(same, range(n), progress=True, chunksize=1)
        kind = type(result.progress).__name__
        result.get()
    return _relay.sent - before, time.monotonic() - began, kind


_sent_before = 0


def _dies_once_counted(x: int) -> int:
    # Item 5 waits until the counts of items 0-4 went to the parent, then kills its worker.
    if x == 5:
        deadline = time.monotonic() + 30
        while _relay.sent == _sent_before and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def inner_then_die(n: int) -> int:
    """An inner call whose worker is killed midway (items 0-4 of ``n`` done)."""
    global _sent_before
    _sent_before = _relay.sent
    with shoal.ThreadPool(1) as pool:
        return sum(pool.map(_dies_once_counted, range(n), progress=f"doomed{n}", chunksize=1))


_gate = threading.Event()
_kept: list[object] = []


def _held(x: int) -> int:
    _gate.wait(60)
    return x


def inner_left_running(n: int) -> int:
    """Start an inner call that cannot finish, wait until the parent heard of it, and return:
    the task ends while its inner call goes on."""
    before = _relay.sent
    pool = shoal.ThreadPool(1)
    _kept.append((pool, pool.map_async(_held, range(n), progress=f"left{n}")))
    deadline = time.monotonic() + 30
    while _relay.sent == before and time.monotonic() < deadline:
        time.sleep(0.01)
    return n
