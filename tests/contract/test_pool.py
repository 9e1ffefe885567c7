"""The ``multiprocessing.Pool`` contract, for ``shoal.Pool`` and ``shoal.ThreadPool``."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import CancelledError
from typing import Any

import psutil
import pytest

import shoal
from conftest import scaled
from contract import _tasks
from contract._tasks import TaskError, add, failing_gen, square, through_gate
from contract.conftest import LIVE, WORKERS, Flavor, drain

SQUARES = [x * x for x in range(40)]


# ---- the shared pool: every method ---------------------------------------------------------


class TestMethods:
    def test_apply(self, pool: shoal.Pool) -> None:
        assert pool.apply(add, (2, 3)) == 5
        assert pool.apply(_tasks.kw_call, (1,), {"b": 2, "fn": 3}) == (1, 2, 3)
        assert pool.apply(_tasks.pid_of) > 0

    def test_apply_async_callback_runs_before_ready(self, pool: shoal.Pool) -> None:
        seen: list[Any] = []

        def callback(value: Any) -> None:
            seen.append(value)

        result = pool.apply_async(add, (4, 5), callback=callback)
        assert result.get(LIVE) == 9
        # The stdlib runs the callback before the result becomes ready.
        assert seen == [9]
        assert result.ready() and result.successful()

    def test_apply_async_error_callback(self, pool: shoal.Pool) -> None:
        called: list[Any] = []
        errors: list[BaseException] = []
        result = pool.apply_async(
            _tasks.fail, (7,), callback=called.append, error_callback=errors.append
        )
        with pytest.raises(TaskError) as info:
            result.get(LIVE)
        assert info.value.value == 7
        assert called == []
        assert len(errors) == 1 and errors[0] is info.value
        assert result.ready() and not result.successful()

    @pytest.mark.parametrize("chunksize", [None, 1, 7, 100])
    def test_map_in_order(self, pool: shoal.Pool, chunksize: int | None) -> None:
        assert pool.map(square, range(40), chunksize) == SQUARES

    def test_map_accepts_any_iterable(self, pool: shoal.Pool) -> None:
        assert pool.map(square, (x for x in range(40))) == SQUARES
        assert pool.map(square, {3}) == [9]

    def test_map_async_callback(self, pool: shoal.Pool) -> None:
        got: list[Any] = []
        result = pool.map_async(square, range(40), callback=got.append)
        assert result.get(LIVE) == SQUARES
        assert got == [SQUARES]
        assert result.successful()

    def test_map_async_error_callback(self, pool: shoal.Pool) -> None:
        errors: list[BaseException] = []
        result = pool.map_async(_tasks.fail_on(13), range(40), 4, error_callback=errors.append)
        with pytest.raises(TaskError) as info:
            result.get(LIVE)
        assert info.value.value == 13
        assert errors == [info.value]
        assert not result.successful()

    def test_starmap(self, pool: shoal.Pool) -> None:
        pairs = [(i, 10 * i) for i in range(30)]
        assert pool.starmap(add, pairs) == [11 * i for i in range(30)]
        assert pool.starmap(add, iter(pairs), chunksize=4) == [11 * i for i in range(30)]

    def test_starmap_async(self, pool: shoal.Pool) -> None:
        got: list[Any] = []
        result = pool.starmap_async(add, [(1, 2), (3, 4)], callback=got.append)
        assert result.get(LIVE) == [3, 7]
        assert got == [[3, 7]]

    @pytest.mark.parametrize("chunksize", [1, 3, 50])
    def test_imap_in_order(self, pool: shoal.Pool, chunksize: int) -> None:
        it = pool.imap(square, range(40), chunksize)
        assert list(it) == SQUARES
        # Exhausted for good.
        with pytest.raises(StopIteration):
            next(it)

    @pytest.mark.parametrize("chunksize", [1, 3])
    def test_imap_unordered_all_items(self, pool: shoal.Pool, chunksize: int) -> None:
        got = list(pool.imap_unordered(square, range(40), chunksize))
        assert sorted(got) == SQUARES

    def test_imap_next_with_timeout(self, pool: shoal.Pool) -> None:
        it = pool.imap(square, range(3))
        assert [it.next(LIVE) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(StopIteration):
            it.next(LIVE)

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda p: p.map(square, []), id="map"),
            pytest.param(lambda p: p.map_async(square, []).get(LIVE), id="map_async"),
            pytest.param(lambda p: p.starmap(add, []), id="starmap"),
            pytest.param(lambda p: p.starmap_async(add, []).get(LIVE), id="starmap_async"),
            pytest.param(lambda p: list(p.imap(square, [])), id="imap"),
            pytest.param(lambda p: list(p.imap_unordered(square, [])), id="imap_unordered"),
            pytest.param(lambda p: list(p.imap(square, iter([]), 5)), id="imap-iterator"),
        ],
    )
    def test_empty_input(self, pool: shoal.Pool, call: Any) -> None:
        assert call(pool) == []

    def test_empty_map_async_runs_callback(self, pool: shoal.Pool) -> None:
        got: list[Any] = []
        result = pool.map_async(square, [], callback=got.append)
        assert result.get(LIVE) == []
        assert got == [[]]


# ---- AsyncResult: timeouts and states --------------------------------------------------------


class TestAsyncResult:
    def test_get_timeout_wait_ready_successful(self, pool: shoal.Pool, gate: _tasks.Gate) -> None:
        result = pool.apply_async(through_gate, (gate, "x"))
        assert gate.wait_started("x")
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(scaled(1))
        result.wait(scaled(1))
        assert not result.ready()
        with pytest.raises(ValueError):
            result.successful()
        gate.open()
        result.wait(LIVE)
        assert result.ready()
        assert result.successful()
        assert result.get(0) == "x"

    def test_map_async_get_timeout(self, pool: shoal.Pool, gate: _tasks.Gate) -> None:
        result = pool.starmap_async(through_gate, [(gate, 1), (gate, 2)])
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(scaled(1))
        gate.open()
        assert result.get(LIVE) == [1, 2]

    def test_imap_next_timeout(self, pool: shoal.Pool, gate: _tasks.Gate) -> None:
        it = pool.imap(_GatedIdentity(gate), range(2))
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(scaled(1))
        gate.open()
        assert [it.next(LIVE), it.next(LIVE)] == [0, 1]
        drain(pool)


class _GatedIdentity:
    def __init__(self, gate: _tasks.Gate) -> None:
        self.gate = gate

    def __call__(self, x: Any) -> Any:
        return self.gate.pass_(x)


# ---- ordering --------------------------------------------------------------------------------


class TestOrdering:
    def test_imap_waits_for_the_first_item(self, pool: shoal.Pool, gate: _tasks.Gate) -> None:
        """Item 0 is held at the gate while item 1 is free: imap must not yield item 1 first."""
        it = pool.imap(_GatedUnless(gate, free=1), range(2))
        assert gate.wait_started(0)
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(scaled(2))
        gate.open()
        assert list(it) == [0, 1]

    def test_imap_unordered_yields_what_finished(self, pool: shoal.Pool, gate: _tasks.Gate) -> None:
        it = pool.imap_unordered(_GatedUnless(gate, free=1), range(2))
        assert it.next(LIVE) == 1  # while item 0 still waits at the gate
        assert not gate.is_open()
        gate.open()
        assert it.next(LIVE) == 0

    def test_map_keeps_order_when_tasks_finish_out_of_order(self, pool: shoal.Pool) -> None:
        delays = [(scaled(0.4) * (5 - i) / 5, i) for i in range(6)]
        assert pool.starmap(_tasks.sleep_then, delays, chunksize=1) == list(range(6))


class _GatedUnless:
    def __init__(self, gate: _tasks.Gate, free: Any) -> None:
        self.gate = gate
        self.free = free

    def __call__(self, x: Any) -> Any:
        return _tasks.gated_unless(self.gate, x, self.free)


# ---- input generators that raise -------------------------------------------------------------


class TestFailingInput:
    @pytest.mark.parametrize("chunksize", [1, 4])
    def test_imap_raises_while_iterating(self, pool: shoal.Pool, chunksize: int) -> None:
        it = pool.imap(square, failing_gen(10, 5), chunksize)  # does not raise here
        got = []
        with pytest.raises(KeyError, match="failed at 5"):
            for x in it:
                got.append(x)
        # In order, every item before the failure first; the partial chunk the failure cut
        # short is dropped (as the stdlib does), so with chunks of 4 only 0..3 come back.
        assert got == [x * x for x in range(5 if chunksize == 1 else 4)]

    def test_imap_unordered_raises_while_iterating(self, pool: shoal.Pool) -> None:
        it = pool.imap_unordered(square, failing_gen(10, 5))
        got = []
        with pytest.raises(KeyError, match="failed at 5"):
            for x in it:
                got.append(x)
        assert set(got) <= {x * x for x in range(5)}

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda p, g: p.map(square, g), id="map"),
            pytest.param(lambda p, g: p.map_async(square, g).get(LIVE), id="map_async"),
            pytest.param(lambda p, g: p.starmap(add, ((x, x) for x in g)), id="starmap"),
        ],
    )
    def test_map_raises(self, pool: shoal.Pool, call: Any) -> None:
        with pytest.raises(KeyError, match="failed at 3"):
            call(pool, failing_gen(10, 3))
        drain(pool)


# ---- construction and life cycle (fresh pools) -----------------------------------------------


@pytest.mark.parametrize("processes", [0, -1])
def test_pool_needs_a_worker(flavor: Flavor, processes: int) -> None:
    with pytest.raises(ValueError):
        flavor.pool_cls(processes)


def test_context_manager_terminates(flavor: Flavor) -> None:
    with flavor.pool() as p:
        assert isinstance(p, flavor.pool_cls)
        assert p.apply(square, (3,)) == 9
    with pytest.raises(ValueError):
        p.apply(square, (3,))
    p.join()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_terminate_returns_once_the_workers_have_exited(method: str) -> None:
    # As the stdlib's terminate(): the end of a with block leaves no worker running, so code
    # right after it that counts child processes or removes what workers used sees them gone.
    with shoal.Pool(WORKERS, context=multiprocessing.get_context(method)) as p:
        assert p.map(square, range(8)) == SQUARES[:8]
        handles = list(p._pool)
        pids = [h.pid for h in handles]
    assert len(pids) == WORKERS
    assert [pid for pid in pids if _running(pid)] == []
    assert not any(h.is_alive() for h in handles)


def test_close_runs_queued_tasks_then_join(flavor: Flavor) -> None:
    p = flavor.pool()
    results = [p.apply_async(square, (i,)) for i in range(20)]
    mapped = p.map_async(square, range(20), 3)
    p.close()
    with pytest.raises(ValueError):
        p.apply_async(square, (1,))
    p.join()
    assert [r.get(0) for r in results] == [i * i for i in range(20)]
    assert mapped.get(0) == [i * i for i in range(20)]
    assert not any(w.is_alive() for w in p._pool)


def test_close_waits_for_imap_input(flavor: Flavor) -> None:
    p = flavor.pool()
    it = p.imap(square, iter(range(30)), 2)
    p.close()
    p.join()
    assert list(it) == SQUARES[:30]


def test_join_while_running_raises(flavor: Flavor) -> None:
    p = flavor.pool()
    try:
        with pytest.raises(ValueError):
            p.join()
    finally:
        p.terminate()
        p.join()


def test_terminate_fails_unfinished_tasks(flavor: Flavor, gate: _tasks.Gate) -> None:
    p = flavor.pool()
    running = [p.apply_async(through_gate, (gate, i)) for i in range(WORKERS)]
    for i in range(WORKERS):
        assert gate.wait_started(i)
    queued = [p.apply_async(square, (i,)) for i in range(5)]
    p.terminate()
    if not flavor.processes:
        gate.open()  # threads cannot be stopped: let the running ones end
    p.join()
    for r in queued:
        r.wait(LIVE)
        assert r.ready()
        if not r.successful():
            with pytest.raises(CancelledError):
                r.get(0)
    # At least the tail of the queue never ran (the stdlib would leave these pending for ever).
    assert not queued[-1].successful()
    if flavor.processes:
        for r in running:
            with pytest.raises(CancelledError):
                r.get(LIVE)
    with pytest.raises(ValueError):
        p.apply(square, (1,))


def test_initializer_and_initargs(flavor: Flavor) -> None:
    token = f"init-{flavor}-{id(object())}"
    with flavor.pool(initializer=_tasks.set_state, initargs=(token,)) as p:
        assert p.map(_tasks.read_state, range(8), 1) == [token] * 8
    _tasks.STATE = None


def test_failed_initializer_breaks_the_pool(flavor: Flavor) -> None:
    # Its first worker starts with the pool and may fail before the call: then apply_async()
    # itself raises.
    with (
        flavor.pool(1, initializer=_tasks.fail_initializer) as p,
        pytest.raises(flavor.pool_broken),
    ):
        p.apply_async(square, (2,)).get(LIVE)


def test_maxtasksperchild(process_flavor: Flavor) -> None:
    with process_flavor.pool(1, maxtasksperchild=1) as p:
        pids = [p.apply(_tasks.pid_of) for _ in range(3)]
        assert len(set(pids)) == 3
        assert p.map(square, range(10), 2) == [x * x for x in range(10)]


def test_maxtasksperchild_rejects_nonsense(process_flavor: Flavor) -> None:
    for bad in (0, -1, "3"):
        with pytest.raises((ValueError, TypeError)):
            process_flavor.pool(1, maxtasksperchild=bad)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_context(process_flavor: Flavor, method: str) -> None:
    _tasks.MARK = "changed in the parent"
    try:
        ctx = multiprocessing.get_context(method)
        with process_flavor.pool(1, context=ctx) as p:
            expected = "changed in the parent" if method == "fork" else "default"
            assert p.apply(_tasks.read_mark) == expected
    finally:
        _tasks.MARK = "default"


# ---- scheduling: an idle worker takes queued work --------------------------------------------

#: 20 trivial tasks take milliseconds; a stuck one waits for the gate (opened only afterwards).
QUEUE_CEILING = 10.0


def test_short_tasks_do_not_wait_behind_a_long_one(
    request: pytest.FixtureRequest, flavor: Flavor, pool: shoal.Pool, gate: _tasks.Gate
) -> None:
    slow = pool.apply_async(through_gate, (gate, "slow"))
    assert gate.wait_started("slow")
    try:
        fast = pool.map_async(square, range(20), 1)
        fast.wait(QUEUE_CEILING)
        assert fast.ready(), "short tasks waited behind the long one"
        assert fast.get(0) == [x * x for x in range(20)]
    finally:
        gate.open()
        assert slow.get(LIVE) == "slow"
        drain(pool)
