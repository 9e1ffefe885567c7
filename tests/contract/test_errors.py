"""How failures come back: a task's own exception, unpicklable arguments and results.

Every way of running work (``CALLS``) is checked against every flavor: the caller gets the task's
own exception type; from a process its ``__cause__`` is the worker's traceback as the facade's
stdlib class, and a note names the task, the worker's pid and the task's arguments.
"""

from __future__ import annotations

import os
import pickle
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import shoal
from contract import _tasks
from contract._tasks import TaskError, Unpicklable, identity
from contract.conftest import LIVE, WORKERS, Flavor, drain

BAD = 4
ITEMS = list(range(6))


@dataclass
class Env:
    flavor: Flavor
    pool: shoal.Pool
    executor: shoal.Executor


@dataclass(frozen=True)
class Call:
    """One way to run ``fn`` over items; ``single`` ones call it once, on the bad item."""

    name: str
    facade: str  # "pool", "executor" or "map": which traceback class to expect
    single: bool
    run: Callable[[Env, Any, list[Any]], Any]

    def __str__(self) -> str:
        return self.name


def _apply_async(env: Env, fn: Any, items: list[Any]) -> Any:
    return env.pool.apply_async(fn, (items[0],)).get(LIVE)


CALLS = [
    Call("Pool.apply", "pool", True, lambda e, fn, items: e.pool.apply(fn, (items[0],))),
    Call("Pool.apply_async", "pool", True, _apply_async),
    Call("Pool.map", "pool", False, lambda e, fn, items: e.pool.map(fn, items, 1)),
    Call("Pool.map-chunks", "pool", False, lambda e, fn, items: e.pool.map(fn, items, 4)),
    Call(
        "Pool.map_async", "pool", False, lambda e, fn, items: e.pool.map_async(fn, items).get(LIVE)
    ),
    Call(
        "Pool.starmap",
        "pool",
        False,
        lambda e, fn, items: e.pool.starmap(fn, [(x,) for x in items], 2),
    ),
    Call("Pool.imap", "pool", False, lambda e, fn, items: list(e.pool.imap(fn, items, 2))),
    Call(
        "Pool.imap_unordered",
        "pool",
        False,
        lambda e, fn, items: list(e.pool.imap_unordered(fn, items)),
    ),
    Call(
        "Executor.submit",
        "executor",
        True,
        lambda e, fn, items: e.executor.submit(fn, items[0]).result(LIVE),
    ),
    Call("Executor.map", "executor", False, lambda e, fn, items: list(e.executor.map(fn, items))),
    Call(
        "Executor.map-chunks",
        "executor",
        False,
        lambda e, fn, items: list(e.executor.map(fn, items, chunksize=4)),
    ),
    Call(
        "Executor.map-buffersize",
        "executor",
        False,
        lambda e, fn, items: list(e.executor.map(fn, items, chunksize=2, buffersize=1)),
    ),
    Call(
        "shoal.map",
        "map",
        False,
        lambda e, fn, items: shoal.map(fn, items, backend=e.flavor.name, workers=WORKERS),
    ),
    Call(
        "shoal.map-unordered",
        "map",
        False,
        lambda e, fn, items: shoal.map(
            fn, items, backend=e.flavor.name, workers=WORKERS, ordered=False
        ),
    ),
]


@pytest.fixture
def env(flavor: Flavor, pool: shoal.Pool, executor: shoal.Executor) -> Env:
    return Env(flavor, pool, executor)


@pytest.fixture
def penv(process_flavor: Flavor, process_pool: shoal.Pool, process_executor: shoal.Executor) -> Env:
    return Env(process_flavor, process_pool, process_executor)


def _expected_tb(env: Env, call: Call) -> type[BaseException] | None:
    if call.facade == "executor":
        return env.flavor.executor_tb
    return env.flavor.pool_tb  # Pool and shoal.map show multiprocessing's RemoteTraceback


def _check_usable(env: Env) -> None:
    drain(env.pool)
    assert env.executor.submit(_tasks.square, 5).result(LIVE) == 25


# ---- a task's own exception ------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_task_exception_comes_back_as_its_own_type(env: Env, call: Call) -> None:
    items = [BAD] if call.single else ITEMS
    with pytest.raises(TaskError) as info:
        call.run(env, _tasks.fail_on(BAD), items)
    exc = info.value
    assert type(exc) is TaskError
    assert exc.value == BAD
    if env.flavor.processes:
        cause = exc.__cause__
        assert type(cause) is _expected_tb(env, call)
        text = str(cause)
        assert "Traceback (most recent call last)" in text
        assert "TaskError" in text and "__call__" in text  # the worker's frames
        notes = [n for n in getattr(exc, "__notes__", []) if n.startswith("shoal:")]
        assert len(notes) == 1, exc.__notes__
        note = notes[0]
        assert f"pid {exc.pid}" in note  # the worker that really ran it
        assert exc.pid != _tasks.pid_of()
        task = re.search(r"task (\d+)", note)
        assert task is not None, note
        if not call.single:
            assert int(task.group(1)) == BAD, note  # its position in the input
        assert str(BAD) in note.split("argument", 1)[1]  # a short repr of its arguments
    else:
        # Threads hand back the very exception, with the task's own frames.
        names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
        assert "__call__" in names
    _check_usable(env)


def test_exception_note_keeps_arguments_short(penv: Env) -> None:
    big = "x" * 100_000
    with pytest.raises(TaskError) as info:
        penv.pool.apply(_tasks.fail, (big,))
    note = info.value.__notes__[-1]
    assert len(note) < 400
    assert "xxx" in note


def test_exception_with_unpicklable_payload(penv: Env) -> None:
    """An exception the worker cannot send back still fails only its task, with a clear error."""
    with pytest.raises(Exception) as info:
        penv.pool.apply(_raise_unpicklable_exception)
    assert "could not" in str(info.value).lower() or "pickl" in str(info.value).lower()
    _check_usable(penv)


def _raise_unpicklable_exception() -> None:
    err = ValueError("holds a lambda")
    err.payload = lambda: None  # type: ignore[attr-defined]
    raise err


# ---- unpicklable arguments (processes) -------------------------------------------------------


UNPICKLABLE_AT = 3


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_unpicklable_argument_raises(penv: Env, call: Call) -> None:
    items: list[Any] = list(ITEMS)
    items[UNPICKLABLE_AT] = Unpicklable()
    if call.single:
        items = [Unpicklable()]
    with pytest.raises(TypeError, match="refuses to be pickled"):
        call.run(penv, identity, items)
    _check_usable(penv)


def test_map_runs_every_chunk_but_one_that_cannot_be_pickled(tmp_path: Any) -> None:
    # The stdlib's task thread pickles a map's chunks one by one, fails the one it cannot
    # pickle and sends the others, which run; the map raises the pickling error. shoal pickles
    # a map's later chunks in one go, some on its manager thread (submit_many), and does the same.
    paths = [str(tmp_path / f"item{i}") for i in range(4)]
    after = str(tmp_path / "after")
    with shoal.Pool(2) as pool:
        with pytest.raises(TypeError, match="refuses to be pickled"):
            pool.map(_tasks.touch, [*paths, Unpicklable(), after], chunksize=1)
        pool.close()
        pool.join()
    assert sorted(os.listdir(tmp_path)) == ["after", *(f"item{i}" for i in range(4))]


def test_submit_unpicklable_argument_gives_failed_future(penv: Env) -> None:
    future = penv.executor.submit(identity, Unpicklable())
    assert future.done()  # at once, not after a round trip
    exc = future.exception(0)
    assert isinstance(exc, TypeError) and "refuses" in str(exc)
    _check_usable(penv)


def test_apply_async_unpicklable_argument_runs_error_callback(penv: Env) -> None:
    errors: list[BaseException] = []
    called: list[Any] = []
    result = penv.pool.apply_async(
        identity, (Unpicklable(),), callback=called.append, error_callback=errors.append
    )
    assert result.ready()
    assert not result.successful()
    assert len(errors) == 1 and isinstance(errors[0], TypeError)
    assert called == []
    with pytest.raises(TypeError):
        result.get(0)
    _check_usable(penv)


def test_map_async_unpicklable_argument_runs_error_callback(penv: Env) -> None:
    errors: list[BaseException] = []
    result = penv.pool.map_async(identity, [1, Unpicklable(), 3], 1, error_callback=errors.append)
    with pytest.raises(TypeError):
        result.get(LIVE)
    assert len(errors) == 1 and isinstance(errors[0], TypeError)


def test_imap_unpicklable_argument_raises_while_iterating(penv: Env) -> None:
    it = penv.pool.imap(identity, [0, 1, Unpicklable(), 3])  # no error here
    assert next(it) == 0
    assert next(it) == 1
    with pytest.raises(TypeError):
        next(it)


def test_unpicklable_function(penv: Env) -> None:
    fn = _tasks.CallableTask()
    fn.lock = __import__("threading").Lock()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        penv.pool.apply(fn, (1,))
    assert penv.executor.submit(fn, 1).exception(0) is not None
    _check_usable(penv)


# ---- unpicklable results (processes) ---------------------------------------------------------


@pytest.mark.parametrize("call", [c for c in CALLS if c.facade == "pool"], ids=str)
def test_unpicklable_result_pool(penv: Env, call: Call) -> None:
    items = [BAD] if call.single else ITEMS
    with pytest.raises(shoal.EncodingError) as info:
        call.run(penv, _tasks.unpicklable_on(BAD), items)
    exc = info.value
    assert isinstance(exc, __import__("multiprocessing").pool.MaybeEncodingError)
    text = str(exc) + "\n".join(getattr(exc, "__notes__", []))
    assert "lambda" in text  # what could not be sent
    task = re.search(r"task (\d+)", text)
    assert task is not None, f"the error does not name the task: {text}"
    if not call.single:
        assert int(task.group(1)) == BAD
    _check_usable(penv)


@pytest.mark.parametrize("call", [c for c in CALLS if c.facade != "pool"], ids=str)
def test_unpicklable_result_executor(penv: Env, call: Call) -> None:
    items = [BAD] if call.single else ITEMS
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)) as info:
        call.run(penv, _tasks.unpicklable_on(BAD), items)
    exc = info.value
    # The pickling error itself: its wording differs by version ("Can't pickle local object"
    # up to 3.12, "Can't get local object" from 3.13), its worker traceback does not.
    assert "pickl" in str(exc).lower() or "dumps" in str(exc.__cause__), exc
    note = "\n".join(getattr(exc, "__notes__", []))
    task = re.search(r"task (\d+)", note)
    assert task is not None, f"the error does not name the task: {exc!r} {note}"
    if not call.single:
        assert int(task.group(1)) == BAD
    _check_usable(penv)


def test_unpicklable_result_fails_only_that_item(penv: Env) -> None:
    it = penv.pool.imap(_tasks.unpicklable_on(2), range(5))
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(shoal.EncodingError):
        next(it)
    assert list(it) == [3, 4]


def test_map_past_the_eagerly_pickled_items() -> None:
    # A map's chunks past its first EAGER_ITEMS items are cut from the list and pickled on the
    # manager thread: they come back whole and in order, and one that cannot be pickled there
    # fails the map with the pickling error, not a hang or a wrong answer.
    from shoal._core._schedule import EAGER_ITEMS

    n = EAGER_ITEMS * 3
    with shoal.Pool(2) as pool:
        assert pool.map(_tasks.square, range(n)) == [x * x for x in range(n)]
        items: list[Any] = list(range(n))
        items[-2] = Unpicklable()
        with pytest.raises(TypeError, match="refuses to be pickled"):
            pool.map(identity, items)
        assert pool.map(_tasks.square, [3, 4]) == [9, 16]  # still usable


def test_a_chunk_answered_with_too_few_results_fails_instead_of_waiting(monkeypatch: Any) -> None:
    # Never expected: a bug that made a worker answer a chunk with fewer results than it had
    # tasks. The call fails, naming it, rather than waiting for ever or misplacing results.
    from shoal._backends import _worker

    real = _worker._run_fast

    def one_short(*args: Any) -> Any:
        packed, values = real(*args)
        return packed, values[:-1]

    monkeypatch.setattr(_worker, "_run_fast", one_short)  # forked workers inherit it
    bug = r"shoal bug: .* sent 3 results for a chunk of 4"
    with shoal.Pool(1, context="fork") as pool, pytest.raises(shoal.TransportError, match=bug):
        pool.map(_tasks.square, range(4), chunksize=4)
