"""The crash matrix: a task failing at every stage of its life, on both facades and every start
method. Each row must end in bounded time with the error the stdlib's own answer implies, and the
same pool must then run a new task (DESIGN.md, "Never stuck")."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from helpers import faults

START_METHODS = ["fork", "spawn", "forkserver"]


class Facade:
    """Runs one call on a Pool or an executor, the same way for both."""

    def __init__(self, kind: str, method: str) -> None:
        self.kind = kind
        if kind == "pool":
            self.pool: Any = shoal.Pool(2, context=method)
        else:
            self.pool = shoal.ProcessPoolExecutor(2, mp_context=method)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.kind == "pool":
            return self.pool.apply_async(fn, args).get(timeout=60)
        return self.pool.submit(fn, *args).result(timeout=60)

    def close(self) -> None:
        if self.kind == "pool":
            self.pool.terminate()
            self.pool.join()
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(
    scope="module",
    params=[(k, m) for k in ("pool", "executor") for m in START_METHODS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def facade(request: pytest.FixtureRequest) -> Iterator[Facade]:
    f = Facade(*request.param)
    yield f
    f.close()


def _died(exitcode: int) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, shoal.WorkerDied), repr(exc)
        assert isinstance(exc, concurrent.futures.process.BrokenProcessPool)
        assert exc.exitcode == exitcode, exc
        assert exc.pid is not None
        if exitcode < 0:
            assert exc.signal == -exitcode
            assert signal.Signals(-exitcode).name in str(exc)

    return check


def _is(cls: type[BaseException]) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert type(exc) is cls or isinstance(exc, cls), repr(exc)

    return check


SEGV = _died(-signal.SIGSEGV)
CEXIT = _died(3)

# (stage, fault) -> check of the error, per facade where they differ.
MATRIX: dict[tuple[str, str], Any] = {
    ("pickle_task", "error"): _is(faults.FaultError),
    ("unpickle_task", "crash"): SEGV,
    ("unpickle_task", "c_exit"): CEXIT,
    ("unpickle_task", "exit"): _is(shoal.TransportError),
    ("unpickle_task", "error"): _is(shoal.TransportError),
    ("run", "crash"): SEGV,
    ("run", "c_exit"): CEXIT,
    ("run", "exit"): _is(SystemExit),
    ("run", "error"): _is(faults.FaultError),
    ("pickle_result", "crash"): SEGV,
    ("pickle_result", "c_exit"): CEXIT,
    ("pickle_result", "exit"): _is(SystemExit),
    ("pickle_result", "error"): {
        "pool": _is(shoal.EncodingError), "executor": _is(faults.FaultError),
    },
    ("unpickle_result", "exit"): _is(shoal.TransportError),
    ("unpickle_result", "error"): _is(shoal.TransportError),
}


def _call_for(stage: str, fault: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    if stage == "pickle_task":
        return faults.take_arg, (faults.FailsToPickle(fault),)
    if stage == "unpickle_task":
        return faults.take_arg, (faults.FailsToUnpickle(fault),)
    if stage == "run":
        return faults.run_fault, (fault,)
    if stage == "pickle_result":
        return faults.return_unpicklable, (fault,)
    return faults.return_fails_to_unpickle, (fault,)


@pytest.mark.parametrize("stage,fault", list(MATRIX), ids=[f"{s}-{f}" for s, f in MATRIX])
def test_crash_matrix(facade: Facade, stage: str, fault: str) -> None:
    check = MATRIX[(stage, fault)]
    if isinstance(check, dict):
        check = check[facade.kind]
    fn, args = _call_for(stage, fault)
    started = time.monotonic()
    with pytest.raises(BaseException) as info:
        facade.call(fn, *args)
    check(info.value)
    assert time.monotonic() - started < 60
    # The same pool goes on.
    assert facade.call(faults.square, 3) == 9


def _wait_for(paths: list[Path], ceiling: float = 60.0) -> list[int]:
    deadline = time.monotonic() + ceiling
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, "tasks did not start"
        time.sleep(0.01)
    return [int(p.read_text()) for p in paths]


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("kind", ["pool", "executor"])
@pytest.mark.parametrize("how_many", [1, 2])
def test_sigkill_busy_workers(kind: str, method: str, how_many: int, tmp_path: Path) -> None:
    f = Facade(kind, method)
    try:
        paths = [tmp_path / f"started-{i}" for i in range(2)]
        if kind == "pool":
            results = [
                f.pool.apply_async(faults.wait_for_file_then_sleep, (str(p), 120)) for p in paths
            ]
        else:
            results = [f.pool.submit(faults.wait_for_file_then_sleep, str(p), 120) for p in paths]
        pids = _wait_for(paths)
        assert len(set(pids)) == 2
        for pid in pids[:how_many]:
            os.kill(pid, signal.SIGKILL)
        for r in results[:how_many]:
            with pytest.raises(shoal.WorkerDied) as info:
                r.get(60) if kind == "pool" else r.result(60)
            assert info.value.signal == signal.SIGKILL
            assert "possibly out of memory" in str(info.value)
        assert f.call(faults.square, 4) == 16
        assert all(not (r.ready() if kind == "pool" else r.done()) for r in results[how_many:])
        for pid in pids[how_many:]:
            os.kill(pid, signal.SIGKILL)  # the survivors would otherwise sleep on at close
    finally:
        f.close()


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_sigkill_idle_workers(kind: str, method: str) -> None:
    f = Facade(kind, method)
    try:
        # Start both workers and learn their pids.
        pids = {f.call(faults.sleep_and_pid, 0.2) for _ in range(4)} if kind == "executor" else {
            h.pid for h in f.pool._pool
        }
        for pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        # Nothing was running: nothing fails, and new work runs on replacements.
        assert [f.call(faults.square, i) for i in range(4)] == [0, 1, 4, 9]
        assert not pids & {f.call(faults.getpid) for _ in range(3)}
    finally:
        f.close()


def crash_on(x: int, bad: int) -> int:
    if x == bad:
        faults.crash()
    return x * x


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_crash_inside_a_chunk_fails_only_its_item(method: str) -> None:
    """Chunks run on the fast path do not record which item runs; after a death their items run
    again one by one, so only the culprit fails and every other result comes back."""
    with shoal.Pool(2, context=method) as pool:
        results = [
            pool.apply_async(crash_on, (x, 5)) for x in range(3)
        ] + [pool.starmap_async(crash_on, [(x, 5) for x in range(12)], chunksize=4)]
        assert [r.get(60) for r in results[:3]] == [0, 1, 4]
        with pytest.raises(shoal.WorkerDied) as info:
            results[3].get(60)
        assert info.value.task == 5
        assert info.value.signal == signal.SIGSEGV
        it = pool.imap(functools.partial(crash_on, bad=7), range(12), chunksize=4)
        got = []
        for _ in range(12):
            try:
                got.append(next(it))
            except shoal.WorkerDied as exc:
                got.append(("died", exc.task))
        assert got == [x * x if x != 7 else ("died", 7) for x in range(12)]
