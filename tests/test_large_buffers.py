"""Large buffers travel once per call through shared memory (docs/design.md, "Large buffers").

numpy arrays, bytes and bytearrays of 1 MiB or more, bound with ``functools.partial`` or given as
items and arguments, are copied once into an anonymous memfd of the pool's process; workers map
it (numpy arrays are rebuilt on the mapping itself). Each test looks at where the buffer really
went: the segments the pool's process holds open, the mappings of the worker.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from helpers import buffers
from helpers.buffers import SIZE
from shoal._backends._segments import wait_closed

np = pytest.importorskip("numpy")

START_METHODS = ["fork", "spawn", "forkserver"]


def _array(value: int | None = None) -> Any:
    arr = np.arange(SIZE // 8, dtype=np.int64)
    if value is not None:
        arr[:] = value
    return arr


class Facade:
    """``map``, ``starmap`` and one call, the same way on a Pool and on an executor."""

    def __init__(self, kind: str, method: str, workers: int = 2, **options: Any) -> None:
        self.kind = kind
        if kind == "pool":
            self.pool: Any = shoal.Pool(workers, context=method, **options)
        else:
            self.pool = shoal.ProcessPoolExecutor(workers, mp_context=method, **options)

    def map(self, fn: Callable[..., Any], items: list[Any], chunksize: int = 2) -> list[Any]:
        if self.kind == "pool":
            return list(self.pool.map(fn, items, chunksize))
        return list(self.pool.map(fn, items, chunksize=chunksize, timeout=60))

    def starmap(self, fn: Callable[..., Any], items: list[tuple[Any, ...]]) -> list[Any]:
        if self.kind == "pool":
            return list(self.pool.starmap(fn, items, 2))
        return list(self.pool.map(fn, *zip(*items, strict=True), chunksize=2, timeout=60))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.kind == "pool":
            return self.pool.apply_async(fn, args).get(timeout=60)
        return self.pool.submit(fn, *args).result(timeout=60)

    def close(self) -> None:
        if self.kind == "pool":
            self.pool.close()
            self.pool.join()
        else:
            self.pool.shutdown(wait=True)


@pytest.fixture(params=[(k, m) for k in ("pool", "executor") for m in START_METHODS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def facade(request: pytest.FixtureRequest) -> Iterator[Facade]:
    f = Facade(*request.param)
    yield f
    f.close()


@pytest.fixture(params=["pool", "executor"])
def single(request: pytest.FixtureRequest) -> Iterator[Facade]:
    """One worker (fork): what a call leaves behind is visible from the next call."""
    f = Facade(request.param, "fork", workers=1)
    yield f
    f.close()


def test_bound_array_is_mapped_once_per_call(facade: Facade) -> None:
    big = _array()
    out = facade.map(functools.partial(buffers.array_probe, big), list(range(12)))
    assert [v for v, _ in out] == list(range(12))
    # Zero-copy, and one segment for all six chunks and both workers.
    homes = {home for _, home in out}
    assert len(homes) == 1 and None not in homes, homes
    # A new call copies afresh: it must see the array as it is then.
    again = facade.map(functools.partial(buffers.array_probe, big), list(range(4)))
    assert {home for _, home in again}.isdisjoint(homes)


def test_array_items_and_arguments(facade: Facade) -> None:
    big = _array()
    total = int(big.sum())
    # The same array in every chunk's items: one segment for the call.
    out = facade.map(buffers.item_probe, [big] * 6, chunksize=1)
    assert [v for v, _ in out] == [total] * 6
    homes = {home for _, home in out}
    assert len(homes) == 1 and None not in homes, homes
    out = facade.starmap(buffers.star_probe, [(big, i) for i in range(6)])
    assert [v for v, _ in out] == list(range(6))
    assert len({home for _, home in out}) == 1
    value, home = facade.call(buffers.item_probe, big)
    assert value == total and home is not None


def test_array_changed_between_calls_is_seen_changed(facade: Facade) -> None:
    big = _array(1)
    fn = functools.partial(buffers.bound_sum, big)
    assert facade.map(fn, list(range(4))) == [len(big)] * 4
    big[:] = 2
    assert facade.map(fn, list(range(4))) == [2 * len(big)] * 4
    big[:] = 3
    assert facade.call(buffers.item_probe, big)[0] == 3 * len(big)


def test_a_task_changing_its_argument_changes_only_its_own_copy(single: Facade) -> None:
    big = _array(1)
    # One worker, one item per chunk: were the mapping shared between chunks, or written
    # through to the pool's copy, the sums would grow.
    assert single.map(buffers.change_and_sum, [big] * 4, chunksize=1) == [2 * len(big)] * 4
    assert int(big.sum()) == len(big)


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_bytes_and_bytearray(facade: Facade, kind: type) -> None:
    data = kind(os.urandom(SIZE))
    expected = (kind.__name__, SIZE, hashlib.sha1(data).hexdigest(), True)
    pid = os.getpid()
    bound = facade.map(functools.partial(buffers.bytes_probe, data, pid), list(range(4)))
    assert bound == [expected] * 4
    as_item = functools.partial(buffers.bytes_probe, pool_pid=pid)
    assert facade.map(as_item, [data] * 2, chunksize=1) == [expected] * 2
    assert facade.starmap(buffers.bytes_probe, [(data, pid, i) for i in range(4)]) == [expected] * 4
    assert facade.call(buffers.bytes_probe, data, pid) == expected
    # Given twice, it arrives as one object, as plain pickle gives it.
    assert facade.call(buffers.same, data, data) is True


def test_small_buffers_stay_in_the_pickle(single: Facade) -> None:
    small = np.arange(1000)
    value, home = single.call(buffers.item_probe, small)
    assert value == int(small.sum()) and home is None
    # No segment of its own for a small argument: the pool's process holds none that it did not
    # hold before the call (one of an earlier test's may still be on its way to being closed,
    # by the thread that closes them: nox -s tests-3.12 once saw one).
    before = buffers.segment_fds(os.getpid())
    assert not single.call(buffers.held_segments, b"x" * 1000, os.getpid()) - before


def test_memory_is_released_when_the_call_ends(single: Facade) -> None:
    big = _array()
    out = single.map(functools.partial(buffers.array_probe, big), list(range(8)))
    homes = {home for _, home in out}
    assert len(homes) == 1 and None not in homes
    # The worker's cached function held the mapping; told the call is over, it dropped it.
    # This task runs after that word, in the same pipe; the worker's answer came first too,
    # and the pool's process then handed its fd to the thread that closes them.
    assert single.call(buffers.mapped_segments) == set()
    assert wait_closed(60)
    assert buffers.segment_fds(os.getpid()) == set()
    # The same for an argument of one task.
    assert single.call(buffers.item_probe, big)[1] is not None
    assert single.call(buffers.mapped_segments) == set()
    assert wait_closed(60)
    assert buffers.segment_fds(os.getpid()) == set()


def test_a_stream_holds_an_item_buffer_only_while_its_chunk_runs() -> None:
    with shoal.Pool(1, context="fork") as pool:
        stream = pool.imap(buffers.item_probe, (_array(i) for i in range(5)))
        out = [next(stream) for _ in range(5)]
        assert [v for v, _ in out] == [i * (SIZE // 8) for i in range(5)]
        assert None not in {home for _, home in out}
        pool.apply(os.getpid)  # the manager is past the last chunk's end
        # The stream is still alive; its items' segments are gone.
        assert wait_closed(60)
        assert buffers.segment_fds(os.getpid()) == set()
        del stream


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_worker_killed_mid_chunk_retries_with_the_same_segment(
    kind: str, method: str, tmp_path: Path
) -> None:
    big = _array()
    f = Facade(kind, method, retries=1)
    try:
        fn = functools.partial(buffers.die_once, str(tmp_path / "died"), big)
        out = f.map(fn, list(range(10)), chunksize=5)
    finally:
        f.close()
    assert (tmp_path / "died").exists()  # a worker did die holding the array
    assert [v for v, _ in out] == list(range(10))
    homes = {home for _, home in out}
    assert len(homes) == 1 and None not in homes, homes


@pytest.mark.parametrize("method", START_METHODS)
def test_turned_off_large_buffers_travel_in_the_pickle(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_SHARED_MEMORY", "0")
    big = _array()
    with shoal.Pool(2, context=method) as pool:
        out = pool.map(functools.partial(buffers.array_probe, big), range(6), 2)
        # No segment for the large argument: none that the pool's process did not hold before
        # (an earlier test's may still be on its way to the thread that closes them).
        before = buffers.segment_fds(os.getpid())
        assert not pool.apply(buffers.held_segments, (bytes(SIZE), os.getpid())) - before
    assert out == [(i, None) for i in range(6)]


def test_worker_that_cannot_map_gets_the_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pool makes segments, but its workers (spawned after this) cannot map them: they say
    # so once, as they start, and get every large buffer in the pickle instead.
    big = _array()
    with shoal.ProcessPoolExecutor(2, mp_context="spawn") as ex:
        monkeypatch.setenv("SHOAL_SHARED_MEMORY", "0")
        futures = [ex.submit(buffers.array_probe, big, i) for i in range(4)]
        assert [f.result(timeout=60) for f in futures] == [(i, None) for i in range(4)]
        # The pool has stopped making segments: the earlier calls' may still be closing (their
        # fds are closed on a thread of their own), but no new one appears.
        before = buffers.segment_fds(os.getpid())
        later = ex.submit(buffers.held_segments, bytes(SIZE), os.getpid())
        assert later.result(timeout=60) <= before


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SHARED_MEMORY", "maybe")
    with pytest.raises(ValueError, match="SHOAL_SHARED_MEMORY must be 0"):
        shoal.Pool(1)
