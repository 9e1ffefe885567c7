"""``shoal.map`` over each backend, and functions plain pickle cannot send (every facade)."""

from __future__ import annotations

from typing import Any

import pytest

import shoal
from contract import _tasks
from contract._tasks import TaskError, failing_gen, square
from contract.conftest import LIVE, WORKERS, Flavor

SQUARES = [x * x for x in range(50)]


@pytest.mark.parametrize("chunksize", [None, 1, 7])
@pytest.mark.parametrize("ordered", [True, False])
def test_map(flavor: Flavor, chunksize: int | None, ordered: bool) -> None:
    out = shoal.map(
        square,
        range(50),
        backend=flavor.name,
        workers=WORKERS,
        chunksize=chunksize,
        ordered=ordered,
    )
    assert isinstance(out, list)
    assert (out if ordered else sorted(out)) == SQUARES


def test_map_default_workers(flavor: Flavor) -> None:
    assert shoal.map(square, range(10), backend=flavor.name) == SQUARES[:10]


@pytest.mark.parametrize("ordered", [True, False])
def test_map_empty(flavor: Flavor, ordered: bool) -> None:
    assert shoal.map(square, [], backend=flavor.name, workers=WORKERS, ordered=ordered) == []
    assert shoal.map(square, iter(()), backend=flavor.name, workers=WORKERS, ordered=ordered) == []


@pytest.mark.parametrize("ordered", [True, False])
def test_map_failing_input(flavor: Flavor, ordered: bool) -> None:
    with pytest.raises(KeyError, match="failed at 3"):
        shoal.map(square, failing_gen(10, 3), backend=flavor.name, workers=WORKERS, ordered=ordered)
    assert shoal.map(square, range(3), backend=flavor.name, workers=WORKERS) == [0, 1, 4]


@pytest.mark.parametrize("ordered", [True, False])
def test_map_task_error(flavor: Flavor, ordered: bool) -> None:
    with pytest.raises(TaskError) as info:
        shoal.map(
            _tasks.fail_on(7), range(10), backend=flavor.name, workers=WORKERS, ordered=ordered
        )
    assert info.value.value == 7


def test_map_bad_arguments(flavor: Flavor) -> None:
    with pytest.raises(ValueError):
        shoal.map(square, range(3), backend=flavor.name, workers=0)
    with pytest.raises(ValueError):
        shoal.map(square, range(3), backend=flavor.name, chunksize=0)


def test_map_unknown_backend() -> None:
    with pytest.raises(shoal.BackendUnavailable) as info:
        shoal.map(square, range(3), backend="no-such-backend")
    assert isinstance(info.value, LookupError)
    assert "no-such-backend" in str(info.value)


# ---- lambdas and closures --------------------------------------------------------------------


def _make_closure(k: int) -> Any:
    offset = k * 100

    def add_offset(x: int) -> int:
        return x + offset

    return add_offset


LAMBDA_RUNS = {
    "Pool.map": lambda pool, ex, fn, xs: pool.map(fn, xs),
    "Pool.apply_async": lambda pool, ex, fn, xs: [pool.apply_async(fn, (x,)).get(LIVE) for x in xs],
    "Pool.imap_unordered": lambda pool, ex, fn, xs: sorted(pool.imap_unordered(fn, xs)),
    "Executor.submit": lambda pool, ex, fn, xs: [ex.submit(fn, x).result(LIVE) for x in xs],
    "Executor.map": lambda pool, ex, fn, xs: list(ex.map(fn, xs, chunksize=2)),
    "shoal.map": lambda pool, ex, fn, xs: shoal.map(
        fn, xs, backend=_backend_of(pool), workers=WORKERS
    ),
}


def _backend_of(pool: shoal.Pool) -> str:
    return "thread" if isinstance(pool, shoal.ThreadPool) else "process"


@pytest.mark.parametrize("how", sorted(LAMBDA_RUNS))
def test_lambdas_and_closures(pool: shoal.Pool, executor: shoal.Executor, how: str) -> None:
    run = LAMBDA_RUNS[how]
    xs = list(range(5))
    assert run(pool, executor, lambda x: x * 3, xs) == [x * 3 for x in xs]
    assert run(pool, executor, _make_closure(2), xs) == [x + 200 for x in xs]
    # A changed closure is a different function (never served from a stale cache).
    assert run(pool, executor, _make_closure(5), xs) == [x + 500 for x in xs]
    k = 7
    assert run(pool, executor, lambda x: x + k, xs) == [x + 7 for x in xs]
