"""Capping native thread pools (BLAS, OpenMP) in workers, so workers x threads fits the CPUs.

Without it every worker of a 16-worker pool on 16 cores starts 16 OpenBLAS threads for its first
matrix product: 256 threads fighting for 16 cores, slower than one worker. Two ways in, because
a library reads its thread count once, when it is loaded:

* the environment (``OMP_NUM_THREADS`` and the library-specific variables), for libraries the
  worker loads later (and for spawned workers: a fresh interpreter loads everything later);
* ``threadpoolctl``, when it is installed, for libraries already loaded in the parent before it
  forked (numpy imported before the pool was made). It costs a few milliseconds: the zygote
  applies it once, before it forks any worker (they inherit the limits); a pool's first worker,
  forked by the pool itself, applies it on a thread of its own after its first chunk.

A user who set any of these variables decided for themselves: then nothing is changed.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["NATIVE_THREAD_VARS", "cap_native_threads", "native_threads_for"]

NATIVE_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: Modules whose presence means a native thread pool may already be loaded.
_NATIVE_USERS = ("numpy", "scipy", "torch", "sklearn", "numexpr")


def native_threads_for(workers: int, cpus: int | None = None) -> int:
    """Threads each of ``workers`` workers may use: an equal share of the CPUs, at least 1."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, workers))


def cap_native_threads(threads: int | None, now: bool = False) -> threading.Thread | None:
    """In a worker: cap native thread pools at ``threads`` (None: leave them).

    The environment is set at once. If a library may already be loaded (inherited through
    fork), threadpoolctl's limits are needed too: applied here when ``now`` (the zygote, off
    every task's path), else returned as a thread, not started, for the caller to start once
    its first chunk is done (importing threadpoolctl and finding the libraries takes several
    milliseconds of the GIL: not before the first task).
    """
    if threads is None or any(var in os.environ for var in NATIVE_THREAD_VARS):
        return None
    for var in NATIVE_THREAD_VARS:
        os.environ[var] = str(threads)
    if not any(name in sys.modules for name in _NATIVE_USERS):
        return None  # nothing loaded yet: the environment is enough

    def limit() -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        try:
            threadpool_limits(limits=threads)
        except Exception:  # noqa: BLE001 - a library threadpoolctl cannot drive: leave it
            pass

    if now:
        limit()
        return None
    return threading.Thread(target=limit, name="shoal-native-threads", daemon=True)
