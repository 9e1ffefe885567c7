"""One adapter per library: each runs a kind of work with that library's own best idiom.

Every adapter starts its pool and shuts it down inside the call (the runner times the whole
call), uses the platform's default start method (joblib excepted: loky always starts its own
workers, see ``docs/benchmarks.md``) and the worker count it is given.

The kinds of run (methods):

* ``map(fn, items, workers)``: ``[fn(x) for x in items]``
* ``imap(fn, items, workers)``: the same, consumed one result at a time as they come
* ``session(fn, batches, workers, init, initargs, lazy_fn)``: one pool with an initializer,
  one map per batch; ``lazy_fn`` is for libraries without an initializer hook
* ``big_arg(big, n, workers)``: ``[slice_sum(big, i, n) for i in range(n)]``, ``big`` a large
  numpy array
* ``stateful(docs, workers)``: a prefix count kept as per-worker state, merged at the end
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import multiprocessing.pool
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from bench import tasks
from bench.env import version_of

__all__ = ["PEERS", "Peer", "pool_chunksize", "select_peers"]


def pool_chunksize(n_items: int, workers: int) -> int:
    """``multiprocessing.Pool.map``'s own rule (about four chunks per worker). Given to the
    libraries whose ``map`` defaults to one item per message (executors, pebble): the idiom a
    user who maps many items there would write."""
    chunks, extra = divmod(n_items, workers * 4)
    return max(1, chunks + bool(extra))


class Peer:
    """A library under test. ``key`` names it on the command line, ``label`` in the tables."""

    key = ""
    label = ""
    dist: str | None = None  # the distribution whose version is reported
    module: str | None = None  # imported to see whether the library is there
    kind = "process"  # "process", "thread" or "serial"
    is_shoal = False

    def available(self) -> str | None:
        """None if usable, else why not."""
        if self.module is None:
            return None
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            return f"not installed ({exc})"
        return None

    def version(self) -> str:
        return (version_of(self.dist) or "?") if self.dist else ""

    # Defaults in terms of map(), for libraries with nothing better.
    def map(self, fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
        raise NotImplementedError

    def imap(self, fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
        raise NotImplementedError

    def session(
        self,
        fn: Callable[[Any], Any],
        batches: list[list[Any]],
        workers: int,
        init: Callable[..., None],
        initargs: tuple[Any, ...],
        lazy_fn: Callable[[Any], Any],
    ) -> list[list[Any]]:
        raise NotImplementedError

    def big_arg(self, big: Any, n: int, workers: int) -> list[int]:
        # The argument bound once with functools.partial, the idiom for "same big object for
        # every task" with a Pool or an executor.
        return self.map(functools.partial(tasks.slice_sum, big, parts=n), list(range(n)), workers)

    def stateful(self, docs: list[list[str]], workers: int) -> Counter[str]:
        # The stdlib's idiom for state that outlives a task: one object per worker slot in a
        # manager process, every task sends its document to one of them.
        with tasks.CounterManager() as manager:
            actors = [manager.PrefixCounter() for _ in range(workers)]
            pairs = [(actors[i % workers], doc) for i, doc in enumerate(docs)]
            self.map(tasks.add_to_actor, pairs, workers)
            total: Counter[str] = Counter()
            for actor in actors:
                total.update(actor.result())
        return total


# ---- serial ------------------------------------------------------------------------------


class Serial(Peer):
    key, label, kind = "serial", "serial", "serial"

    def map(self, fn, items, workers):
        return [fn(x) for x in items]

    imap = map

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        init(*initargs)
        return [[fn(x) for x in batch] for batch in batches]

    def big_arg(self, big, n, workers):
        return [tasks.slice_sum(big, i, n) for i in range(n)]

    def stateful(self, docs, workers):
        counts: Counter[str] = Counter()
        for doc in docs:
            tasks.count_prefixes(counts, doc)
        return counts


# ---- multiprocessing.Pool-like -----------------------------------------------------------


class _PoolLike(Peer):
    """``with Pool(n) as pool: pool.map(...)`` (``__exit__`` terminates, as the stdlib's)."""

    def _factory(self) -> Callable[..., Any]:
        raise NotImplementedError

    def map(self, fn, items, workers):
        with self._factory()(workers) as pool:
            return pool.map(fn, items)

    def imap(self, fn, items, workers):
        out = []
        with self._factory()(workers) as pool:
            for value in pool.imap(fn, items):
                out.append(value)
        return out

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        with self._factory()(workers, initializer=init, initargs=initargs) as pool:
            return [pool.map(fn, batch) for batch in batches]


def _merged(parts: Iterable[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in parts:
        total.update(counts)
    return total


class StdlibPool(_PoolLike):
    key, label, dist = "mp", "multiprocessing.Pool", None

    def _factory(self):
        return multiprocessing.get_context().Pool


class ShoalPool(_PoolLike):
    key, label, dist, module, is_shoal = "shoal_pool", "shoal.Pool", "shoal", "shoal", True

    def _factory(self):
        import shoal

        return shoal.Pool

    def stateful(self, docs, workers):
        # shoal's idiom: each task adds to shoal.worker_state(); worker_exit hands it back as
        # the worker retires. close() right after the last submission (the stdlib's
        # map_async/close/join/get) lets a worker that runs out of work retire while the others
        # finish; __exit__ terminates, which runs no exit function.
        import shoal

        with shoal.Pool(workers, worker_exit=tasks.shoal_state_exit) as pool:
            done = pool.map_async(tasks.shoal_state_add, docs)
            pool.close()
            pool.join()
            done.get()  # raises if a task failed
            return _merged(pool.worker_exit_results())


# ---- concurrent.futures-like -------------------------------------------------------------


class _ExecutorLike(Peer):
    """``with Executor(n) as ex: list(ex.map(fn, items, chunksize=...))``."""

    def _factory(self) -> Callable[..., Any]:
        raise NotImplementedError

    def map(self, fn, items, workers):
        with self._factory()(max_workers=workers) as ex:
            return list(ex.map(fn, items, chunksize=pool_chunksize(len(items), workers)))

    def imap(self, fn, items, workers):
        out = []
        with self._factory()(max_workers=workers) as ex:
            for value in ex.map(fn, items):  # one item per message: results as they come
                out.append(value)
        return out

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        with self._factory()(max_workers=workers, initializer=init, initargs=initargs) as ex:
            return [
                list(ex.map(fn, batch, chunksize=pool_chunksize(len(batch), workers)))
                for batch in batches
            ]


class StdlibExecutor(_ExecutorLike):
    key, label = "cf", "ProcessPoolExecutor"

    def _factory(self):
        import concurrent.futures

        return concurrent.futures.ProcessPoolExecutor


class ShoalExecutor(_ExecutorLike):
    key, label, dist, module, is_shoal = (
        "shoal_executor", "shoal.ProcessPoolExecutor", "shoal", "shoal", True,
    )

    def _factory(self):
        import shoal

        return shoal.ProcessPoolExecutor

    def stateful(self, docs, workers):
        # shoal's idiom, as for shoal.Pool: shutdown(wait=False) once everything is submitted
        # (workers that run out retire at once), the with block's shutdown(wait=True) waits.
        import shoal

        with shoal.ProcessPoolExecutor(workers, worker_exit=tasks.shoal_state_exit) as ex:
            results = ex.map(tasks.shoal_state_add, docs,
                             chunksize=pool_chunksize(len(docs), workers))
            ex.shutdown(wait=False)
            for _ in results:  # raises if a task failed
                pass
        return _merged(ex.worker_exit_results())


# ---- pebble ------------------------------------------------------------------------------


class Pebble(Peer):
    key, label, dist, module = "pebble", "pebble", "pebble", "pebble"

    def map(self, fn, items, workers):
        import pebble

        with pebble.ProcessPool(max_workers=workers) as pool:
            future = pool.map(fn, items, chunksize=pool_chunksize(len(items), workers))
            return list(future.result())

    def imap(self, fn, items, workers):
        import pebble

        out = []
        with pebble.ProcessPool(max_workers=workers) as pool:
            for value in pool.map(fn, items).result():
                out.append(value)
        return out

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        import pebble

        with pebble.ProcessPool(max_workers=workers, initializer=init, initargs=initargs) as pool:
            return [
                list(pool.map(fn, b, chunksize=pool_chunksize(len(b), workers)).result())
                for b in batches
            ]


# ---- joblib ------------------------------------------------------------------------------


def _shutdown_loky() -> None:
    """joblib keeps its loky executor for the next call; shut it down so that every run pays
    for its own start-up and shut-down, as the other libraries do."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


class Joblib(Peer):
    key, label, dist, module = "joblib", "joblib (loky)", "joblib", "joblib"

    def map(self, fn, items, workers):
        from joblib import Parallel, delayed

        try:
            return Parallel(n_jobs=workers)(delayed(fn)(x) for x in items)
        finally:
            _shutdown_loky()

    def imap(self, fn, items, workers):
        from joblib import Parallel, delayed

        out = []
        try:
            gen = Parallel(n_jobs=workers, return_as="generator")(delayed(fn)(x) for x in items)
            for value in gen:
                out.append(value)
        finally:
            _shutdown_loky()
        return out

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        from joblib import Parallel, delayed

        try:
            with Parallel(n_jobs=workers) as parallel:
                return [parallel(delayed(lazy_fn)(x) for x in batch) for batch in batches]
        finally:
            _shutdown_loky()

    def big_arg(self, big, n, workers):
        # joblib's idiom: pass the array; it is dumped once and memory-mapped by the workers.
        from joblib import Parallel, delayed

        try:
            return Parallel(n_jobs=workers)(delayed(tasks.slice_sum)(big, i, n) for i in range(n))
        finally:
            _shutdown_loky()


# ---- mpire -------------------------------------------------------------------------------


def _mpire_args(items: list[Any]) -> Iterable[Any]:
    # mpire unpacks an item that is a tuple, list or dict into arguments: wrap such items.
    if items and isinstance(items[0], (tuple, list, dict)):
        return [(x,) for x in items]
    return items


class Mpire(Peer):
    key, label, dist, module = "mpire", "mpire", "mpire", "mpire"

    def map(self, fn, items, workers):
        from mpire import WorkerPool

        with WorkerPool(n_jobs=workers) as pool:
            return pool.map(fn, _mpire_args(items), iterable_len=len(items),
                            concatenate_numpy_output=False)

    def imap(self, fn, items, workers):
        from mpire import WorkerPool

        out = []
        with WorkerPool(n_jobs=workers) as pool:
            for value in pool.imap(fn, _mpire_args(items), iterable_len=len(items)):
                out.append(value)
        return out

    def session(self, fn, batches, workers, init, initargs, lazy_fn):
        from mpire import WorkerPool

        worker_init = functools.partial(init, *initargs)
        with WorkerPool(n_jobs=workers, keep_alive=True) as pool:
            return [pool.map(fn, batch, worker_init=worker_init) for batch in batches]

    def big_arg(self, big, n, workers):
        # mpire's idiom: shared_objects (copy-on-write under fork).
        from mpire import WorkerPool

        with WorkerPool(n_jobs=workers, shared_objects=big) as pool:
            return pool.map(tasks.shared_slice_sum, [(i, n) for i in range(n)])

    def stateful(self, docs, workers):
        # mpire's idiom: worker state, set up by worker_init and handed back by worker_exit.
        from mpire import WorkerPool

        total: Counter[str] = Counter()
        with WorkerPool(n_jobs=workers, use_worker_state=True) as pool:
            pool.map_unordered(tasks.state_add, [(d,) for d in docs], iterable_len=len(docs),
                               worker_init=tasks.state_init, worker_exit=tasks.state_exit)
            for counts in pool.get_exit_results():
                total.update(counts)
        return total


# ---- thread pools (I/O work) -------------------------------------------------------------


class _ThreadPeer(Peer):
    kind = "thread"


class StdlibThreadPool(_ThreadPeer):
    key, label = "mp_threads", "multiprocessing ThreadPool"

    def map(self, fn, items, workers):
        with multiprocessing.pool.ThreadPool(workers) as pool:
            return pool.map(fn, items)


class StdlibThreadExecutor(_ThreadPeer):
    key, label = "cf_threads", "ThreadPoolExecutor"

    def map(self, fn, items, workers):
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
            return list(ex.map(fn, items))


class JoblibThreads(_ThreadPeer):
    key, label, dist, module = "joblib_threads", "joblib (threads)", "joblib", "joblib"

    def map(self, fn, items, workers):
        from joblib import Parallel, delayed

        return Parallel(n_jobs=workers, prefer="threads")(delayed(fn)(x) for x in items)


class MpireThreads(_ThreadPeer):
    key, label, dist, module = "mpire_threads", "mpire (threading)", "mpire", "mpire"

    def map(self, fn, items, workers):
        from mpire import WorkerPool

        with WorkerPool(n_jobs=workers, start_method="threading") as pool:
            return pool.map(fn, _mpire_args(items), iterable_len=len(items))


class PebbleThreads(_ThreadPeer):
    key, label, dist, module = "pebble_threads", "pebble.ThreadPool", "pebble", "pebble"

    def map(self, fn, items, workers):
        import pebble

        with pebble.ThreadPool(max_workers=workers) as pool:
            return list(pool.map(fn, items).result())


class ShoalThreadPool(_ThreadPeer):
    key, label, dist, module, is_shoal = (
        "shoal_threadpool", "shoal.ThreadPool", "shoal", "shoal", True,
    )

    def map(self, fn, items, workers):
        import shoal

        with shoal.ThreadPool(workers) as pool:
            return pool.map(fn, items)


class ShoalThreadExecutor(_ThreadPeer):
    key, label, dist, module, is_shoal = (
        "shoal_thread_executor", "shoal.ThreadPoolExecutor", "shoal", "shoal", True,
    )

    def map(self, fn, items, workers):
        import shoal

        with shoal.ThreadPoolExecutor(max_workers=workers) as ex:
            return list(ex.map(fn, items))


PEERS: list[Peer] = [
    Serial(),
    StdlibPool(),
    StdlibExecutor(),
    Joblib(),
    Mpire(),
    Pebble(),
    ShoalPool(),
    ShoalExecutor(),
    StdlibThreadPool(),
    StdlibThreadExecutor(),
    JoblibThreads(),
    MpireThreads(),
    PebbleThreads(),
    ShoalThreadPool(),
    ShoalThreadExecutor(),
]

#: Names that stand for several peers on the command line.
GROUPS = {
    "stdlib": ["mp", "cf", "mp_threads", "cf_threads"],
    "shoal": [p.key for p in PEERS if p.is_shoal],
    "threads": [p.key for p in PEERS if p.kind == "thread"],
    "all": [p.key for p in PEERS],
}


def select_peers(names: list[str] | None) -> list[Peer]:
    """The peers named (keys or group names), always with serial; all when ``names`` is None."""
    if not names:
        return list(PEERS)
    wanted = {"serial"}
    for name in names:
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif any(p.key == name for p in PEERS):
            wanted.add(name)
        else:
            known = sorted([p.key for p in PEERS] + list(GROUPS))
            raise SystemExit(f"unknown library {name!r}; known: {', '.join(known)}")
    return [p for p in PEERS if p.key in wanted]
