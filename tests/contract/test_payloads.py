"""Big payloads in both directions at once, and no reference kept to a task's data afterwards."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

import shoal
from contract import _tasks
from contract._tasks import Counted, identity
from contract.conftest import LIVE, WORKERS, Flavor, wait_until

#: Releasing is immediate; this only bounds a failure.
RELEASE_CEILING = 10.0

MB = 1 << 20
N_BIG = 8
BIG = 20 * MB


def _payload(i: int, size: int = BIG) -> bytes:
    block = bytes(range(i, 256)) + bytes(range(i))
    return block * (size // 256)


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return [_payload(i) for i in range(N_BIG)]


@pytest.fixture(scope="module")
def expected(payloads: list[bytes]) -> list[bytes]:
    return [_tasks.translate(p) for p in payloads]


def _pool_apply_async(pool: shoal.Pool, ex: shoal.Executor, data: list[bytes]) -> list[Any]:
    results = [pool.apply_async(_tasks.translate, (d,)) for d in data]
    return [r.get(LIVE) for r in results]


def _pool_map_async(pool: shoal.Pool, ex: shoal.Executor, data: list[bytes]) -> list[Any]:
    return pool.map_async(_tasks.translate, data, 2).get(LIVE)  # type: ignore[no-any-return]


def _executor_submit(pool: shoal.Pool, ex: shoal.Executor, data: list[bytes]) -> list[Any]:
    futures = [ex.submit(_tasks.translate, d) for d in data]
    return [f.result(LIVE) for f in futures]


@pytest.mark.parametrize(
    "run",
    [_pool_apply_async, _pool_map_async, _executor_submit],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_big_tasks_and_results_at_once(
    process_pool: shoal.Pool,
    process_executor: shoal.Executor,
    payloads: list[bytes],
    expected: list[bytes],
    run: Any,
) -> None:
    """8 tasks of 20 MB in flight, each returning 20 MB, while more are being sent: a pool that
    wrote to a full pipe while its worker wrote to another full pipe would hang here. (Threads
    have no pipes; ``test_big_payloads_shoal_map`` covers them.)"""
    out = run(process_pool, process_executor, payloads)
    assert len(out) == N_BIG
    for got, want in zip(out, expected, strict=True):
        assert got == want
    del out
    gc.collect()


def test_big_payloads_shoal_map(
    flavor: Flavor, payloads: list[bytes], expected: list[bytes]
) -> None:
    out = shoal.map(
        _tasks.translate, payloads[:4], backend=flavor.name, workers=WORKERS, chunksize=1
    )
    assert out == expected[:4]


# ---- no reference outlives its task (the stdlib's test_release_task_refs) --------------------


def _objects(n: int = 10) -> list[Counted]:
    return [Counted(i) for i in range(n)]


RUNS = {
    "Pool.map": lambda pool, ex, objs: pool.map(identity, objs),
    "Pool.apply_async": lambda pool, ex, objs: [
        pool.apply_async(identity, (o,)).get(LIVE) for o in objs
    ],
    "Pool.imap": lambda pool, ex, objs: list(pool.imap(identity, objs)),
    "Pool.starmap_async": lambda pool, ex, objs: pool.starmap_async(
        identity, [(o,) for o in objs], 3
    ).get(LIVE),
    "Executor.submit": lambda pool, ex, objs: [
        f.result(LIVE) for f in [ex.submit(identity, o) for o in objs]
    ],
    "Executor.map": lambda pool, ex, objs: list(ex.map(identity, objs, chunksize=3)),
}


@pytest.mark.parametrize("how", sorted(RUNS))
def test_release_task_refs(pool: shoal.Pool, executor: shoal.Executor, how: str) -> None:
    gc.collect()
    before = Counted.live
    objs = _objects()
    refs = [weakref.ref(o) for o in objs]
    results = RUNS[how](pool, executor, objs)
    assert [r.payload for r in results] == list(range(10))
    del objs, results
    assert wait_until(lambda: all(r() is None for r in refs), RELEASE_CEILING), (
        "an argument is still referenced"
    )
    # From processes the results are copies: they must be gone too.
    assert wait_until(lambda: Counted.live == before, RELEASE_CEILING), (
        f"{Counted.live - before} results kept"
    )


def test_release_failed_task_refs(pool: shoal.Pool, executor: shoal.Executor) -> None:
    objs = _objects(4)
    refs = [weakref.ref(o) for o in objs]
    futures = [executor.submit(_tasks.fail, o) for o in objs]
    results = [pool.apply_async(_tasks.fail, (o,)) for o in objs]
    assert all(isinstance(f.exception(LIVE), _tasks.TaskError) for f in futures)
    for r in results:
        r.wait(LIVE)
    assert not any(r.successful() for r in results)
    del objs, futures, results, r
    assert wait_until(lambda: all(r() is None for r in refs), RELEASE_CEILING), (
        "an argument is still referenced"
    )


def test_release_function_and_callbacks(pool: shoal.Pool, executor: shoal.Executor) -> None:
    fn = _tasks.CallableTask()
    fn_ref = weakref.ref(fn)
    callback = _tasks.CallableTask()
    callback_ref = weakref.ref(callback)
    result = pool.map_async(fn, range(10), 3, callback=callback)
    assert result.get(LIVE) == list(range(10))
    assert list(executor.map(fn, range(10))) == list(range(10))
    assert executor.submit(fn, 1).result(LIVE) == 1
    del fn, callback
    # The result object is still held: it must not hold the callback any more.
    assert wait_until(lambda: fn_ref() is None and callback_ref() is None, RELEASE_CEILING)
    assert result.successful()
