"""Callbacks that use the pool they belong to must not deadlock it.

The stdlib runs ``multiprocessing.Pool`` callbacks on its result-handler thread, so a callback
that waits on the pool waits for itself. shoal records results on one thread and runs callbacks
on another.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

import shoal
from conftest import scaled
from contract._tasks import TaskError, add, fail, square
from contract.conftest import LIVE, Flavor


def _run(start: Any) -> list[Any]:
    """``start(record)`` launches work whose callback ends by calling ``record(value)``; returns
    what was recorded, once it was."""
    out: list[Any] = []
    done = threading.Event()

    def record(value: Any) -> None:
        out.append(value)
        done.set()

    start(record)
    assert done.wait(LIVE), "the callback never finished: deadlock"
    return out


def test_apply_inside_callback(pool: shoal.Pool) -> None:
    def start(record: Any) -> None:
        pool.apply_async(square, (3,), callback=lambda v: record(pool.apply(square, (v,))))

    assert _run(start) == [81]


def test_map_inside_error_callback(pool: shoal.Pool) -> None:
    def start(record: Any) -> None:
        pool.apply_async(
            fail, (5,), error_callback=lambda e: record((type(e), pool.map(square, range(4))))
        )

    assert _run(start) == [(TaskError, [0, 1, 4, 9])]


def test_map_async_inside_map_async_callback(pool: shoal.Pool) -> None:
    def start(record: Any) -> None:
        pool.map_async(
            square,
            range(3),
            callback=lambda vs: record(pool.starmap_async(add, [(v, v) for v in vs]).get(LIVE)),
        )

    assert _run(start) == [[0, 2, 8]]


def test_imap_inside_callback(pool: shoal.Pool) -> None:
    def start(record: Any) -> None:
        pool.apply_async(square, (2,), callback=lambda v: record(list(pool.imap(square, range(v)))))

    assert _run(start) == [[0, 1, 4, 9]]


def test_terminate_inside_callback(flavor: Flavor) -> None:
    # terminate() waits for the workers to exit, as the stdlib's does; from a callback it must
    # not wait on the thread it runs on.
    p = flavor.pool()

    def start(record: Any) -> None:
        p.apply_async(square, (3,), callback=lambda v: (p.terminate(), record(v)))

    assert _run(start) == [9]
    p.join()
    assert not any(w.is_alive() for w in p._pool)


def test_wait_inside_callback_for_a_result_with_a_callback(pool: shoal.Pool) -> None:
    inner_ran: list[Any] = []

    def start(record: Any) -> None:
        def outer(v: Any) -> None:
            try:
                inner = pool.apply_async(square, (v,), callback=inner_ran.append)
                record(inner.get(scaled(20)))
            except Exception as exc:  # noqa: BLE001 - the test records whatever it got
                record(exc)

        pool.apply_async(square, (2,), callback=outer)

    assert _run(start) == [16]
    assert inner_ran == [16]


def test_done_callback_waits_on_another_future(executor: shoal.Executor) -> None:
    def start(record: Any) -> None:
        def callback(f: cf.Future[Any]) -> None:
            inner = executor.submit(square, f.result())
            # The inner future has a done-callback of its own: result() must not wait for it.
            inner.add_done_callback(lambda _f: None)
            record(inner.result(LIVE))

        executor.submit(square, 3).add_done_callback(callback)

    assert _run(start) == [81]


def test_done_callback_maps(executor: shoal.Executor) -> None:
    def start(record: Any) -> None:
        executor.submit(square, 2).add_done_callback(
            lambda f: record(list(executor.map(square, range(f.result()))))
        )

    assert _run(start) == [[0, 1, 4, 9]]


def test_slow_callback_does_not_hold_back_results(pool: shoal.Pool) -> None:
    """While one callback blocks, other results still arrive."""
    release = threading.Event()
    entered = threading.Event()

    def slow_callback(_: Any) -> None:
        entered.set()
        release.wait(LIVE)

    pool.apply_async(square, (1,), callback=slow_callback)
    try:
        assert entered.wait(LIVE)
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.apply_async(square, (7,)).get(LIVE) == 49
    finally:
        release.set()
