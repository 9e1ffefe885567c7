"""Native thread pools (BLAS, OpenMP) in workers are capped so workers x threads fits the CPUs,
unless the user set the variables themselves."""

from __future__ import annotations

import os
import threading

import pytest

import shoal
from shoal._backends._native_threads import NATIVE_THREAD_VARS, native_threads_for


def worker_env(_: object = None) -> dict[str, str | None]:
    return {var: os.environ.get(var) for var in NATIVE_THREAD_VARS}


def worker_pid(_: object = None) -> int:
    return os.getpid()


def worker_blas_threads(_: object = None) -> list[int]:
    """The BLAS thread counts threadpoolctl sees in this worker, once the capping thread ended."""
    for t in threading.enumerate():
        if t.name == "shoal-native-threads":
            t.join(30)
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def no_user_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in NATIVE_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)


def test_share_of_the_cpus() -> None:
    assert native_threads_for(2, cpus=2) == 1
    assert native_threads_for(1, cpus=2) == 2
    assert native_threads_for(3, cpus=16) == 5
    assert native_threads_for(64, cpus=2) == 1


@pytest.mark.usefixtures("no_user_setting")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_get_an_equal_share_in_their_environment(method: str, workers: int) -> None:
    expected = str(native_threads_for(workers))
    with shoal.Pool(workers, context=method) as pool:
        for env in pool.map(worker_env, range(4 * workers), chunksize=1):
            assert env == dict.fromkeys(NATIVE_THREAD_VARS, expected)
    assert "OMP_NUM_THREADS" not in os.environ  # the parent's own environment is untouched


def test_a_users_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in NATIVE_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with shoal.ProcessPoolExecutor(2) as ex:
        env = ex.submit(worker_env).result()
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["OPENBLAS_NUM_THREADS"] is None


@pytest.mark.usefixtures("no_user_setting")
def test_blas_loaded_before_the_fork_is_capped_with_threadpoolctl() -> None:
    pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401 - loads OpenBLAS in the parent, before the workers are forked
    from threadpoolctl import threadpool_info

    parent = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    if not parent:
        pytest.fail("numpy without a BLAS threadpoolctl knows: cannot check the cap")
    workers = 2
    cap = native_threads_for(workers)
    with shoal.Pool(workers, context="fork") as pool:
        # The zygote caps before it forks; the pool's first worker (forked by the pool itself)
        # caps once its first chunk is done, so the first chunks may still see the old count.
        seen: set[int] = set()
        for _ in range(200):
            seen.update(pool.map(worker_pid, range(8), 1))
            if len(seen) == workers:
                break
        assert len(seen) == workers, "every worker should have run a chunk"
        for counts in pool.map(worker_blas_threads, range(4), chunksize=1):
            assert counts and all(n == min(cap, p) for n, p in zip(counts, parent, strict=True))
    # The parent keeps its own thread count.
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == parent
