"""``shoal.map``: the one-call form for scripts and notebooks, over the same core.

Pools are kept per (backend, workers) and reused by later calls with the same settings, so a
notebook does not pay start-up on every call; they are shut down at exit.
"""

from __future__ import annotations

import multiprocessing.pool
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from shoal._core._backend import Backend, WorkerConfig, create_backend
from shoal._core._cpu import cpu_count
from shoal._core._jobs import ListJob, Presentation, Stream, StreamJob
from shoal._core._lifecycle import track
from shoal._core._schedule import chunk_sizes, default_chunksize, start_feeder, submit_list
from shoal._core._task import ONE
from shoal._errors import PoolBroken
from shoal._observing import make_progress

__all__ = ["map"]

_PRESENTATION = Presentation(
    remote_tb=multiprocessing.pool.RemoteTraceback,  # type: ignore[attr-defined]
    pool_style=False,
    timeout_error=TimeoutError,
    broken_error=PoolBroken,
)

_pools: dict[tuple[str, int], Backend] = {}
_lock = threading.Lock()


def _forget_pools() -> None:
    # A forked child (a worker whose task calls shoal.map) has the parent's pools but none of
    # their threads or workers: work handed to them would never run. It makes its own.
    global _lock
    _pools.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _backend_for(backend: str, workers: int) -> Backend:
    key = (backend, workers)
    with _lock:
        found = _pools.get(key)
        if found is not None and found.broken is None:
            return found
        created = create_backend(
            backend,
            WorkerConfig(max_workers=workers, start_all=False, name=f"ShoalMap{backend.title()}"),
        )
        track(created, drain=False)
        _pools[key] = created
        return created


def map(
    fn: Callable[[Any], Any],
    iterable: Iterable[Any],
    *,
    workers: int | None = None,
    backend: str = "process",
    chunksize: int | None = None,
    ordered: bool = True,
    progress: bool | str | Any = False,
) -> list[Any]:
    """``[fn(x) for x in iterable]``, run in parallel; returns the list.

    Args:
        fn: the function; lambdas and closures work under every start method.
        iterable: the inputs.
        workers: how many workers; None means one per usable CPU (processes) or
            ``min(32, CPUs + 4)`` (threads).
        backend: ``"process"`` or ``"thread"``.
        chunksize: items per message; None sizes chunks automatically.
        ordered: False returns results in the order they finish.
        progress: True (or a title, or a ProgressBar) shows a progress bar.

    Raises:
        ValueError: ``workers`` < 1 or ``chunksize`` < 1.
        BackendUnavailable: an unknown backend.
    """
    if workers is None:
        workers = cpu_count() if backend == "process" else min(32, (os.cpu_count() or 1) + 4)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, not {workers!r}")
    if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
        raise ValueError(f"chunksize must be a positive int or None, not {chunksize!r}")
    pool = _backend_for(backend, workers)
    items = list(iterable)
    estimate = getattr(pool, "item_time", None)
    size: int | list[int] = chunksize or chunk_sizes(
        len(items), workers, estimate(fn) if estimate is not None else None
    )
    bar = make_progress(progress, len(items), getattr(fn, "__name__", "map"))
    if ordered:
        job = ListJob(len(items), _PRESENTATION, None)
        job.progress = bar
        try:
            submit_list(
                pool.submit, fn, ONE, items, size, job,
                many=getattr(pool, "submit_many", None),
            )
        except Exception as exc:  # noqa: BLE001 - an item cannot be pickled
            job.fail_rest(exc)
        return job.get()  # type: ignore[no-any-return]
    stream = StreamJob(False, _PRESENTATION)
    stream.progress = bar
    done = threading.Event()
    start_feeder(
        pool.submit, fn, ONE, items, chunksize or default_chunksize(len(items), workers), stream,
        done.set, "shoal.map-feeder",
    )
    return list(Stream(stream))


