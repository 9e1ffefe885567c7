"""How a map without a chunksize is cut: the stdlib's chunk size first, smaller chunks towards
the end so the workers finish together, a floor from measured task times; the user's chunksize
always wins."""

from __future__ import annotations

import functools

import pytest

import shoal
from helpers import faults
from shoal._core._schedule import MIN_CHUNK_SECONDS, chunk_sizes, default_chunksize


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 200, 1000, 100_000, 1_000_000])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_sizes_cover_every_item_and_never_grow(n: int, workers: int) -> None:
    sizes = chunk_sizes(n, workers)
    assert sum(sizes) == n
    assert all(s >= 1 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    if n:
        assert sizes[0] == min(n, default_chunksize(n, workers))


def test_the_last_chunks_are_small_the_count_stays_modest() -> None:
    sizes = chunk_sizes(200, 2)
    assert sizes[0] == 25  # the stdlib's rule: about four chunks per worker
    assert sizes[-1] <= 25 // 4
    assert len(sizes) <= 3 * (200 // 25)
    big = chunk_sizes(1_000_000, 2)
    assert len(big) <= 24  # a million tiny tasks: a few chunks more than the stdlib's 8


def test_measured_task_times_set_the_floor() -> None:
    # Long tasks: the tail goes down to single tasks.
    assert chunk_sizes(200, 2, item_time=0.005)[-1] == 1
    # Tiny tasks: no chunk shorter than MIN_CHUNK_SECONDS of work (but never over the top).
    tiny = 1e-7
    sizes = chunk_sizes(1_000_000, 2, item_time=tiny)
    assert min(sizes[:-1]) * tiny >= MIN_CHUNK_SECONDS * 0.99
    assert max(sizes) == default_chunksize(1_000_000, 2)


def test_the_pool_learns_task_times_by_function_through_partials() -> None:
    with shoal.Pool(2) as pool:
        backend = pool._backend
        assert backend.item_time(faults.square) is None
        assert pool.map(faults.square, range(100)) == [x * x for x in range(100)]
        learned = backend.item_time(faults.square)
        assert learned is not None and learned > 0
        bound = functools.partial(faults.square)
        assert backend.item_time(bound) == learned
        assert backend.item_time(lambda x: x) is None


def test_results_in_order_whatever_the_sizes() -> None:
    with shoal.Pool(3) as pool:
        for n in (0, 1, 5, 97, 1000):
            assert pool.map(faults.square, range(n)) == [x * x for x in range(n)]
            assert pool.starmap(pow, [(x, 2) for x in range(n)]) == [x * x for x in range(n)]
        assert shoal.map(faults.square, range(333)) == [x * x for x in range(333)]


def test_a_given_chunksize_wins() -> None:
    with shoal.Pool(2) as pool:
        # One chunk of everything: one worker runs every task.
        pids = pool.map(faults.getpid, range(50), chunksize=50)
        assert len(set(pids)) == 1
