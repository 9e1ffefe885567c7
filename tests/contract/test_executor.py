"""The ``concurrent.futures`` contract, for ``shoal.ProcessPoolExecutor`` and
``shoal.ThreadPoolExecutor``."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import threading
from typing import Any

import pytest

import shoal
from conftest import scaled
from contract import _tasks
from contract._tasks import TaskError, add, failing_gen, square, through_gate
from contract.conftest import LIVE, WORKERS, Flavor


class TestSubmit:
    def test_submit(self, executor: shoal.Executor) -> None:
        future = executor.submit(add, 2, 3)
        assert isinstance(future, cf.Future)
        assert isinstance(future, shoal.Future)
        assert future.result(LIVE) == 5
        assert future.done() and not future.cancelled() and future.exception() is None

    def test_submit_keywords_named_like_parameters(self, executor: shoal.Executor) -> None:
        # submit(fn, /, *args, **kwargs): "fn" is free for the user's own keyword.
        assert executor.submit(_tasks.kw_call, 1, b=2, fn=3).result(LIVE) == (1, 2, 3)

    def test_submit_exception(self, executor: shoal.Executor) -> None:
        future = executor.submit(_tasks.fail, "x")
        exc = future.exception(LIVE)
        assert type(exc) is TaskError and exc.value == "x"
        with pytest.raises(TaskError):
            future.result(0)

    def test_result_timeout(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        future = executor.submit(through_gate, gate, 1)
        with pytest.raises(TimeoutError):
            future.result(scaled(1))
        with pytest.raises(TimeoutError):
            future.exception(scaled(0.2))
        assert not future.done()
        gate.open()
        assert future.result(LIVE) == 1

    def test_wait_first_completed(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        slow = executor.submit(through_gate, gate, "slow")
        fast = executor.submit(square, 4)
        done, not_done = cf.wait([slow, fast], LIVE, return_when=cf.FIRST_COMPLETED)
        assert fast in done
        assert not_done == {slow}
        gate.open()
        done, not_done = cf.wait([slow, fast], LIVE)
        assert done == {slow, fast} and not not_done
        assert slow.result() == "slow"

    def test_wait_first_exception(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        slow = executor.submit(through_gate, gate, "slow")
        bad = executor.submit(_tasks.fail, 1)
        done, not_done = cf.wait([slow, bad], LIVE, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and not_done == {slow}
        gate.open()
        assert slow.result(LIVE) == "slow"

    def test_as_completed(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        fast = [executor.submit(square, i) for i in range(5)]
        cf.wait(fast, LIVE)
        slow = executor.submit(through_gate, gate, "slow")
        order = []
        for future in cf.as_completed([slow, *fast], LIVE):
            order.append(future)
            if len(order) == len(fast):
                assert not slow.done()
                gate.open()
        assert set(order[:5]) == set(fast)
        assert order[5] is slow
        assert sorted(f.result() for f in fast) == [0, 1, 4, 9, 16]

    def test_as_completed_timeout(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        slow = executor.submit(through_gate, gate, "slow")
        with pytest.raises(TimeoutError):
            for _ in cf.as_completed([slow], scaled(1)):
                pass
        gate.open()
        assert slow.result(LIVE) == "slow"

    def test_await_and_wrap_future(self, executor: shoal.Executor) -> None:
        async def main() -> list[Any]:
            a = await executor.submit(square, 3)
            b = await asyncio.wrap_future(executor.submit(square, 4))
            c = await asyncio.gather(*(executor.submit(add, i, i) for i in range(4)))
            loop = asyncio.get_running_loop()
            d = await loop.run_in_executor(executor, square, 5)
            try:
                await executor.submit(_tasks.fail, "awaited")
            except TaskError as exc:
                e = exc.value
            return [a, b, c, d, e]

        assert asyncio.run(main()) == [9, 16, [0, 2, 4, 6], 25, "awaited"]

    def test_done_callback(self, executor: shoal.Executor) -> None:
        got: list[Any] = []
        ran = threading.Event()

        def callback(f: cf.Future[Any]) -> None:
            got.append(f.result())
            ran.set()

        executor.submit(square, 6).add_done_callback(callback)
        assert ran.wait(LIVE)
        assert got == [36]


class TestMap:
    @pytest.mark.parametrize("chunksize", [1, 3, 100])
    def test_map_in_order(self, executor: shoal.Executor, chunksize: int) -> None:
        assert list(executor.map(square, range(40), chunksize=chunksize)) == [
            x * x for x in range(40)
        ]

    def test_map_several_iterables_stops_at_shortest(self, executor: shoal.Executor) -> None:
        assert list(executor.map(add, range(10), range(0, 100, 10), chunksize=3)) == [
            11 * i for i in range(10)
        ]
        assert list(executor.map(add, range(3), range(100))) == [0, 2, 4]

    @pytest.mark.parametrize("chunksize", [1, 4])
    def test_map_empty(self, executor: shoal.Executor, chunksize: int) -> None:
        assert list(executor.map(square, [], chunksize=chunksize)) == []
        assert list(executor.map(add, [], [], chunksize=chunksize)) == []

    def test_map_bad_chunksize(self, executor: shoal.Executor) -> None:
        with pytest.raises(ValueError):
            executor.map(square, range(3), chunksize=0)

    @pytest.mark.parametrize("chunksize", [1, 3])
    def test_map_error_while_iterating(self, executor: shoal.Executor, chunksize: int) -> None:
        it = executor.map(_tasks.fail_on(5), range(10), chunksize=chunksize)
        got = []
        with pytest.raises(TaskError) as info:
            for x in it:
                got.append(x)
        assert info.value.value == 5
        # Results before the failed item come first; with chunks, the failed item's whole chunk
        # fails (as the stdlib's chunked map does).
        assert got == [x * x for x in range(5 if chunksize == 1 else 3)]

    def test_map_timeout(self, executor: shoal.Executor, gate: _tasks.Gate) -> None:
        it = executor.map(through_gate, [gate, gate], [1, 2], timeout=scaled(1))
        with pytest.raises(TimeoutError):
            next(it)
        gate.open()
        # The executor is usable after a map timed out.
        assert executor.submit(square, 3).result(LIVE) == 9

    def test_map_input_error_raises(self, executor: shoal.Executor) -> None:
        # Executor.map reads its input at once (as the stdlib does), so map() itself raises.
        with pytest.raises(KeyError, match="failed at 3"):
            list(executor.map(square, failing_gen(10, 3)))
        assert executor.submit(square, 3).result(LIVE) == 9


# ---- construction and life cycle (fresh executors) -------------------------------------------


@pytest.mark.parametrize("workers", [0, -1])
def test_executor_needs_a_worker(flavor: Flavor, workers: int) -> None:
    with pytest.raises(ValueError):
        flavor.executor_cls(workers)


def test_context_manager_shuts_down(flavor: Flavor) -> None:
    with flavor.executor() as ex:
        futures = [ex.submit(square, i) for i in range(10)]
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * i for i in range(10)]
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_shutdown_wait(flavor: Flavor) -> None:
    ex = flavor.executor()
    futures = [ex.submit(_tasks.sleep_then, scaled(0.2), i) for i in range(6)]
    ex.shutdown(wait=True)
    assert [f.result(0) for f in futures] == list(range(6))
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    ex.shutdown()  # twice is fine


def test_shutdown_cancel_futures(flavor: Flavor, gate: _tasks.Gate) -> None:
    ex = flavor.executor()
    running = [ex.submit(through_gate, gate, i) for i in range(WORKERS)]
    for i in range(WORKERS):
        assert gate.wait_started(i)
    queued = [ex.submit(square, i) for i in range(10)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.open()
    ex.shutdown(wait=True)
    assert [f.result(LIVE) for f in running] == list(range(WORKERS))
    cancelled = [f for f in queued if f.cancelled()]
    # A process worker may already hold one chunk it prefetched; everything else is dropped.
    assert len(cancelled) >= len(queued) - WORKERS
    for i, f in enumerate(queued):
        assert f.done()
        if not f.cancelled():
            assert f.result(0) == i * i


def test_shutdown_no_wait_finishes_the_queue(flavor: Flavor) -> None:
    ex = flavor.executor()
    futures = [ex.submit(square, i) for i in range(20)]
    ex.shutdown(wait=False)
    assert [f.result(LIVE) for f in futures] == [i * i for i in range(20)]


def test_initializer_and_initargs(flavor: Flavor) -> None:
    token = f"init-{flavor}-{id(object())}"
    with flavor.executor(initializer=_tasks.set_state, initargs=(token,)) as ex:
        assert list(ex.map(_tasks.read_state, range(8))) == [token] * 8
    _tasks.STATE = None


def test_failed_initializer_breaks_the_executor(flavor: Flavor) -> None:
    with flavor.executor(1, initializer=_tasks.fail_initializer) as ex:
        # Its first worker may start with the executor (fork) and fail before this submit: then
        # submit() itself raises, as the stdlib's may ("perhaps the executor is already broken").
        with pytest.raises(flavor.executor_broken):
            ex.submit(square, 2).result(LIVE)
        with pytest.raises(flavor.executor_broken):
            ex.submit(square, 2).result(LIVE)


def test_max_tasks_per_child(process_flavor: Flavor) -> None:
    # Without mp_context this is spawn, as the stdlib pins it.
    with process_flavor.executor(1, max_tasks_per_child=2) as ex:
        pids = [ex.submit(_tasks.pid_of).result(LIVE) for _ in range(4)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]


def test_max_tasks_per_child_rejects_fork(process_flavor: Flavor) -> None:
    with pytest.raises(ValueError):
        process_flavor.executor(
            1, mp_context=multiprocessing.get_context("fork"), max_tasks_per_child=1
        )
    with pytest.raises(ValueError):
        process_flavor.executor(1, max_tasks_per_child=0)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_mp_context(process_flavor: Flavor, method: str) -> None:
    _tasks.MARK = "changed in the parent"
    try:
        ctx = multiprocessing.get_context(method)
        with process_flavor.executor(1, mp_context=ctx) as ex:
            expected = "changed in the parent" if method == "fork" else "default"
            assert ex.submit(_tasks.read_mark).result(LIVE) == expected
    finally:
        _tasks.MARK = "default"


# ---- scheduling: an idle worker takes queued work --------------------------------------------

QUEUE_CEILING = 10.0


def test_short_tasks_do_not_wait_behind_a_long_one(
    request: pytest.FixtureRequest, flavor: Flavor, executor: shoal.Executor, gate: _tasks.Gate
) -> None:
    slow = executor.submit(through_gate, gate, "slow")
    assert gate.wait_started("slow")
    try:
        fast = [executor.submit(square, i) for i in range(20)]
        _done, not_done = cf.wait(fast, QUEUE_CEILING)
        assert not not_done, f"{len(not_done)} short tasks waited behind the long one"
    finally:
        gate.open()
        assert slow.result(LIVE) == "slow"
