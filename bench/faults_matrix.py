"""``python -m bench.faults_matrix``: the same faults against shoal and its peers, measured.

Each (library, case) runs in its own interpreter, in its own session, under a hard timeout.
The driver makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so any process a case
leaves behind is re-parented to the driver, where it is seen, counted and killed.

In the child, one case goes:

1. build a pool of two workers with the library's default start method, and run one task
   (``square(3)``), so the workers exist;
2. the fault (each step is bounded by ``--wait`` seconds: no answer by then is "hangs");
3. the next task on the same pool (``square(7)``): does the pool survive?
4. the library's clean shutdown (``close(); join()``, ``shutdown(wait=True)``, ...), bounded too;
5. the interpreter exits normally (a shutdown that hung makes it ``os._exit`` instead).

Then the driver waits a grace period, and anything of the case's still alive is an orphan. A
case the child does not finish within ``--timeout`` is killed: first the child alone (what
outlives it is counted as orphans), then its process group and the orphans.

A case **passes** when the caller got an error in bounded time (for an idle worker killed
between tasks: the next task's right result), the same pool ran the next task, the shutdown
returned, and nothing was left behind: no process, no new ``/dev/shm`` entry. For "parent
SIGKILLed": no process of the pool outlives its owner by more than the grace period.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
TIME_LIMIT = 1.0  # seconds, for the "time limit" case

# ---- the libraries (used in the child) -------------------------------------------------------


class NoAnswer(Exception):
    """A step's wait ran out: the library gave no answer in time."""


Waiter = Callable[[float], Any]


def _pool_waiter(result: Any) -> Waiter:
    def wait(timeout: float) -> Any:
        result.wait(timeout)
        if not result.ready():
            raise NoAnswer
        return result.get()

    return wait


def _future_waiter(future: Any) -> Waiter:
    import concurrent.futures

    def wait(timeout: float) -> Any:
        done, _ = concurrent.futures.wait([future], timeout)
        if not done:
            raise NoAnswer
        return future.result()

    return wait


class Adapter:
    """One library's pool, driven the way its documentation suggests."""

    key = ""
    label = ""
    has_time_limit = False

    def __init__(self, time_limit: float | None) -> None:
        self.time_limit = time_limit

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        raise NotImplementedError

    def submit_many(self, fn: Callable[..., Any], arglists: list[tuple[Any, ...]]) -> list[Waiter]:
        return [self.submit(fn, *args) for args in arglists]

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def version() -> str:
        return platform.python_version()


class ShoalPool(Adapter):
    key, label, has_time_limit = "shoal-pool", "shoal.Pool", True

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        import shoal

        self.pool = shoal.Pool(WORKERS, task_timeout=time_limit)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _pool_waiter(self.pool.apply_async(fn, args))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()

    @staticmethod
    def version() -> str:
        import shoal

        return shoal.__version__


class ShoalExecutor(ShoalPool):
    key, label = "shoal-executor", "shoal.ProcessPoolExecutor"

    def __init__(self, time_limit: float | None) -> None:
        Adapter.__init__(self, time_limit)
        import shoal

        self.ex = shoal.ProcessPoolExecutor(WORKERS, task_timeout=time_limit)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _future_waiter(self.ex.submit(fn, *args))

    def close(self) -> None:
        self.ex.shutdown(wait=True)


class MpPool(Adapter):
    key, label = "mp-pool", "multiprocessing.Pool"

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        import multiprocessing

        self.pool = multiprocessing.Pool(WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _pool_waiter(self.pool.apply_async(fn, args))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class CfExecutor(Adapter):
    key, label = "cf-executor", "concurrent.futures.ProcessPoolExecutor"

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        import concurrent.futures

        self.ex = concurrent.futures.ProcessPoolExecutor(WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _future_waiter(self.ex.submit(fn, *args))

    def close(self) -> None:
        self.ex.shutdown(wait=True)


class Joblib(Adapter):
    """``with Parallel(n_jobs=2) as parallel: parallel(delayed(f)(x) ...)``: one Parallel object
    kept open (it reuses loky's executor); each call blocks, so it runs in a thread."""

    key, label, has_time_limit = "joblib", "joblib.Parallel (loky)", True

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        import joblib

        self.parallel = joblib.Parallel(n_jobs=WORKERS, backend="loky", timeout=time_limit)
        self.parallel.__enter__()
        self.lock = threading.Lock()

    def submit_many(self, fn: Callable[..., Any], arglists: list[tuple[Any, ...]]) -> list[Waiter]:
        import joblib

        box: dict[str, Any] = {}

        def call() -> None:
            with self.lock:
                try:
                    box["value"] = self.parallel(joblib.delayed(fn)(*a) for a in arglists)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiter, as a future would
                    box["error"] = exc

        thread = threading.Thread(target=call, daemon=True)
        thread.start()

        def waiter(i: int) -> Waiter:
            def wait(timeout: float) -> Any:
                thread.join(timeout)
                if thread.is_alive():
                    raise NoAnswer
                if "error" in box:
                    raise box["error"]
                return box["value"][i]

            return wait

        return [waiter(i) for i in range(len(arglists))]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return self.submit_many(fn, [args])[0]

    def close(self) -> None:
        self.parallel.__exit__(None, None, None)

    @staticmethod
    def version() -> str:
        import joblib

        return joblib.__version__


class Loky(Adapter):
    """loky's reusable executor (what joblib runs on), used directly as an executor."""

    key, label = "loky", "loky executor"

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        from joblib.externals import loky

        self.ex = loky.get_reusable_executor(max_workers=WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _future_waiter(self.ex.submit(fn, *args))

    def close(self) -> None:
        self.ex.shutdown(wait=True)

    @staticmethod
    def version() -> str:
        from joblib.externals import loky

        return str(loky.__version__)


class Mpire(Adapter):
    key, label, has_time_limit = "mpire", "mpire.WorkerPool", True

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        from mpire import WorkerPool

        self.pool = WorkerPool(n_jobs=WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _pool_waiter(self.pool.apply_async(fn, args, task_timeout=self.time_limit))

    def close(self) -> None:
        self.pool.stop_and_join()

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("mpire")


class Pebble(Adapter):
    key, label, has_time_limit = "pebble", "pebble.ProcessPool", True

    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        from pebble import ProcessPool

        self.pool = ProcessPool(max_workers=WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waiter:
        return _future_waiter(self.pool.schedule(fn, args=args, timeout=self.time_limit))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("pebble")


ADAPTERS: dict[str, type[Adapter]] = {
    a.key: a for a in (ShoalPool, ShoalExecutor, MpPool, CfExecutor, Joblib, Loky, Mpire, Pebble)
}

# ---- the cases -------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    label: str
    #: runs the fault against the adapter and returns the caller's answer (or raises it)
    run: Callable[[Adapter, float, Path], Any] | None = None
    #: the right answer is a value, not an error (an innocent task after an idle worker died)
    expects_value: Any = None
    needs_time_limit: bool = False
    notes: list[str] = field(default_factory=list)


def _call(fn: Callable[..., Any], *args: Any) -> Callable[[Adapter, float, Path], Any]:
    def run(adapter: Adapter, wait: float, tmp: Path) -> Any:
        return adapter.submit(fn, *args)(wait)

    return run


def _wait_for_pid(path: Path, wait: float) -> int:
    deadline = time.monotonic() + wait
    while not path.exists():
        if time.monotonic() > deadline:
            raise NoAnswer("the task did not start")
        time.sleep(0.01)
    return int(path.read_text())


def _kill_busy(adapter: Adapter, wait: float, tmp: Path) -> Any:
    from bench import fault_tasks as t

    path = tmp / "busy.pid"
    waiter = adapter.submit(t.pid_then_sleep, str(path), 30.0)
    os.kill(_wait_for_pid(path, wait), signal.SIGKILL)
    return waiter(wait)


def _kill_idle(adapter: Adapter, wait: float, tmp: Path) -> Any:
    from bench import fault_tasks as t

    waiters = adapter.submit_many(t.pid_after, [(0.5,), (0.5,)])
    pids = {w(wait) for w in waiters}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _emit(event="killed_idle", pids=sorted(pids))
    time.sleep(0.5)
    return adapter.submit(t.square, 5)(wait)


def _time_limit(adapter: Adapter, wait: float, tmp: Path) -> Any:
    from bench import fault_tasks as t

    path = tmp / "slow.pid"
    waiter = adapter.submit(t.pid_then_sleep, str(path), 30.0)
    try:
        return waiter(wait)
    finally:
        # Was the task stopped, or does it run on in its worker (its heartbeat goes on)?
        beat = Path(f"{path}.beat")
        if beat.exists():
            time.sleep(0.5)
            before = beat.stat().st_mtime_ns
            time.sleep(1.0)
            _emit(event="slow_task", still_running=beat.stat().st_mtime_ns != before,
                  worker_alive=_alive(int(path.read_text())))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cases() -> dict[str, Case]:
    from bench import fault_tasks as t

    cases = [
        Case("segfault", "task segfaults", _call(t.segfault)),
        Case("os_exit", "task calls `os._exit(1)`", _call(t.os_exit)),
        Case("sys_exit", "task calls `sys.exit()`", _call(t.sys_exit)),
        Case("raise", "task raises an exception", _call(t.raise_error)),
        Case("arg_pickle", "argument fails to pickle", _call(t.take, t.fails_to_pickle())),
        Case("arg_unpickle", "argument fails to unpickle in the worker",
             _call(t.take, t.fails_to_unpickle())),
        Case("result_pickle", "result fails to pickle", _call(t.return_fails_to_pickle)),
        Case("result_unpickle", "result fails to unpickle in the parent",
             _call(t.return_fails_to_unpickle)),
        Case("kill_busy", "SIGKILL of a busy worker", _kill_busy),
        Case("kill_idle", "SIGKILL of both idle workers, then a task", _kill_idle,
             expects_value=25),
        Case("time_limit", f"task runs past a {TIME_LIMIT:g} s time limit", _time_limit,
             needs_time_limit=True),
        Case("parent_kill", "the pool's owner is SIGKILLed"),
    ]
    return {c.key: c for c in cases}


CASE_KEYS = [
    "segfault", "os_exit", "sys_exit", "raise", "arg_pickle", "arg_unpickle", "result_pickle",
    "result_unpickle", "kill_busy", "kill_idle", "time_limit", "parent_kill",
]

# ---- the child: one case against one library ------------------------------------------------


def _emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event, default=repr) + "\n")
    sys.stdout.flush()


def _describe(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    return {
        "kind": "error",
        "type": cls.__name__,
        "qualname": f"{cls.__module__}.{cls.__qualname__}",
        "mro": [c.__name__ for c in cls.__mro__],
        "message": str(exc)[:300],
    }


def _bounded(fn: Callable[[], Any], wait: float) -> dict[str, Any]:
    """Run ``fn`` in a thread; its outcome, or "hang" if it neither returns nor raises in time
    (a library wait that ran out raises NoAnswer, which is a hang too)."""
    box: dict[str, Any] = {}
    started = time.monotonic()

    def target() -> None:
        try:
            box["out"] = {"kind": "value", "value": repr(fn())[:120]}
        except NoAnswer as exc:
            box["out"] = {"kind": "hang", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - whatever the library raised is the finding
            box["out"] = _describe(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(wait + 2.0)  # the step's own waits take ``wait``; this catches a blocking call
    out = box.get("out", {"kind": "hang", "message": "blocked in the library"})
    out["elapsed"] = round(time.monotonic() - started, 3)
    return out


def child_main(lib: str, case_key: str, tmp: str, wait: float) -> None:
    from bench import fault_tasks as t

    case = _cases()[case_key]
    adapter_cls = ADAPTERS[lib]
    _emit(event="start", version=adapter_cls.version(), python=platform.python_version())
    adapter = adapter_cls(TIME_LIMIT if case.needs_time_limit else None)
    warm = _bounded(lambda: adapter.submit(t.square, 3)(wait), wait)
    _emit(event="warm", **warm)
    if warm["kind"] != "value":
        os._exit(4)
    if case_key == "parent_kill":
        import psutil

        path = Path(tmp) / "busy.pid"
        adapter.submit(t.pid_then_sleep, str(path), 60.0)
        _wait_for_pid(path, wait)
        family = [p.pid for p in psutil.Process().children(recursive=True)]
        _emit(event="ready", descendants=family)
        time.sleep(120)
        os._exit(5)
    assert case.run is not None
    run = case.run
    _emit(event="fault", **_bounded(lambda: run(adapter, wait, Path(tmp)), wait))
    _emit(event="next", **_bounded(lambda: adapter.submit(t.square, 7)(wait), wait))
    close = _bounded(lambda: adapter.close(), wait)
    _emit(event="close", **close)
    if close["kind"] == "hang":
        os._exit(3)  # a normal exit would block on the same threads; the driver counts orphans
    _emit(event="done")


# ---- the driver ------------------------------------------------------------------------------


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants() -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True)]


def _reap() -> None:
    """Collect re-parented orphans that have died (we are their subreaper)."""
    import psutil

    for p in psutil.Process().children():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(p.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass


def _live(pids: list[int]) -> list[int]:
    _reap()
    return [p for p in pids if _alive(p)]


def _describe_pids(pids: list[int]) -> list[str]:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            cmd = " ".join(p.cmdline())[-80:] or p.name()
            out.append(f"{pid} {cmd}")
        except psutil.Error:
            out.append(str(pid))
    return out


def _kill_all(pids: list[int], pgid: int | None) -> None:
    if pgid is not None:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _live(pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _shm() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def _shm_in_use() -> set[str]:
    """Names under /dev/shm that some live process has open or mapped."""
    names: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps") as f:
                for line in f:
                    i = line.find("/dev/shm/")
                    if i >= 0:
                        names.add(line[i + 9:].split()[0].split("/")[0])
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    names.add(target[9:].split()[0].split("/")[0])
        except OSError:
            continue
    return names


def _shm_left(before: set[str], family: set[int]) -> tuple[list[str], list[str]]:
    """New /dev/shm entries that this case left, and new ones that belong to someone else.

    The machine is shared: other processes create entries too. An entry whose name carries a
    pid (loky's ``sem.loky-PID-...``, joblib's ``joblib_memmapping_folder_PID_...``) is the
    case's only if that pid was one of the case's processes; an entry without one is the
    case's if no live process has it open (everything of the case is dead by now).
    """
    import re

    new = _shm() - before
    if not new:
        return [], []
    time.sleep(0.5)
    new &= _shm()  # gone by now: someone's transient entry
    in_use = _shm_in_use()
    ours, foreign = [], []
    for name in sorted(new):
        pids = {int(t) for t in re.findall(r"(?<![0-9a-f])(\d{2,7})(?=[-_])", name)}
        if pids:
            (ours if pids & family else foreign).append(name)
        else:
            (foreign if name in in_use else ours).append(name)
    return ours, foreign


def run_case(lib: str, case_key: str, *, timeout: float, wait: float, grace: float,
             orphan_wait: float) -> dict[str, Any]:
    shm_before = _shm()
    with tempfile.TemporaryDirectory(prefix="shoal-faults-") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH"), str(ROOT)) if p
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.faults_matrix", "--child", lib, case_key, tmp, str(wait)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        err: list[str] = []

        def read_out() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        def read_err() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err.append(line)
                del err[:-60]

        readers = [threading.Thread(target=read_out, daemon=True),
                   threading.Thread(target=read_err, daemon=True)]
        for r in readers:
            r.start()
        events: dict[str, dict[str, Any]] = {}
        killed_at: float | None = None
        parent_kill: dict[str, Any] | None = None
        deadline = started + timeout
        eof = False
        family: set[int] = {proc.pid}
        while not eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            family.update(_descendants())  # for telling this case's /dev/shm entries apart
            try:
                line = lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if line is None:
                eof = True
                break
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            events[ev.get("event", "?")] = ev
            if ev.get("event") == "ready" and case_key == "parent_kill":
                pool_family = [int(p) for p in ev["descendants"]]
                family.update(pool_family)
                proc.kill()  # the owner alone: what do its workers do?
                proc.wait()
                t0 = time.monotonic()
                while _live(pool_family) and time.monotonic() - t0 < grace:
                    time.sleep(0.02)
                survivors = _live(pool_family)
                described = _describe_pids(survivors)
                # How long do they outlive it? Watch a while longer.
                while _live(survivors) and time.monotonic() - t0 < orphan_wait:
                    time.sleep(0.05)
                last = _live(survivors)
                parent_kill = {"family": len(pool_family), "survivors": described, "grace": grace,
                               "still_alive": len(last), "watched": orphan_wait,
                               "gone_after": None if last else round(time.monotonic() - t0, 1)}
                break
        pgid = proc.pid
        if proc.poll() is None:
            # End of file on its stdout comes before the child's exit (or never, while a worker
            # that inherited the pipe lives on): wait for the exit itself, until the deadline.
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            killed_at = time.monotonic() - started
            proc.kill()  # the child alone first: its workers' fate is counted as orphans
            proc.wait()
        else:
            proc.wait()
        # Whatever of the case is still alive after the grace period is an orphan.
        t0 = time.monotonic()
        while _descendants() and time.monotonic() - t0 < grace:
            family.update(_descendants())
            _reap()
            time.sleep(0.05)
        _reap()
        left_pids = [p for p in _descendants() if _alive(p)]
        orphans = _describe_pids(left_pids)
        _kill_all(left_pids, pgid)
        for r in readers:
            r.join(2)
        wall = time.monotonic() - started
    shm_new, shm_foreign = _shm_left(shm_before, family)
    return {
        "lib": lib, "case": case_key, "events": events, "returncode": proc.returncode,
        "killed_after": None if killed_at is None else round(killed_at, 1),
        "orphans": orphans if parent_kill is None else [], "parent_kill": parent_kill,
        "shm_new": shm_new, "shm_foreign": shm_foreign, "wall": round(wall, 2),
        "stderr_tail": "".join(err)[-3000:],
    }


# ---- judging and the table -------------------------------------------------------------------


def judge(rec: dict[str, Any], case: Case, adapter: type[Adapter]) -> tuple[str, bool | None]:
    """A cell's text, and pass (True), fail (False) or not applicable (None)."""
    if case.needs_time_limit and not adapter.has_time_limit:
        return "n/a (no time limit)", None
    ev = rec["events"]
    parts: list[str] = []
    ok = True
    if case.key == "parent_kill":
        pk = rec["parent_kill"]
        if pk is None:
            return _setup_failure(rec), False
        n = len(pk["survivors"])
        shm = (f"; {len(rec['shm_new'])} /dev/shm entries left" if rec["shm_new"] else "")
        if n:
            when = (f"gone after {pk['gone_after']:g} s" if pk["gone_after"] is not None
                    else f"{pk['still_alive']} still alive after {pk['watched']:g} s")
            return f"{n} of {pk['family']} processes outlive it ({when}){shm}", False
        return f"all {pk['family']} processes exit within {pk['grace']:g} s{shm}", not shm
    if "warm" not in ev or ev["warm"].get("kind") != "value":
        return _setup_failure(rec), False
    fault = ev.get("fault")
    if fault is None or fault["kind"] == "hang":
        parts.append("hangs")
        ok = False
    elif fault["kind"] == "error":
        if case.expects_value is not None:
            parts.append(f"the innocent task fails ({fault['type']})")
            ok = False
        else:
            parts.append(fault["type"])
    else:
        if case.expects_value is not None and fault["value"] == repr(case.expects_value):
            parts.append("ok")
        else:
            parts.append(f"returns {fault['value'][:30]}")
            ok = False
    slow = ev.get("slow_task")
    if slow and slow.get("still_running"):
        parts.append("task keeps running")
    nxt = ev.get("next")
    if fault is not None and nxt is None:
        pass  # already "hangs": the child never got this far
    elif nxt is not None and nxt["kind"] == "error":
        parts.append(f"pool broken ({nxt['type']})")
        ok = False
    elif nxt is not None and nxt["kind"] == "hang":
        parts.append("next task hangs")
        ok = False
    elif nxt is not None and nxt.get("value") != "49":
        parts.append(f"next task returns {nxt.get('value')}")
        ok = False
    close = ev.get("close")
    if close is not None and close["kind"] == "hang":
        parts.append("shutdown hangs")
        ok = False
    elif close is not None and close["kind"] == "error":
        parts.append(f"shutdown raises {close['type']}")
        ok = False
    if rec["killed_after"] is not None:
        parts.append(f"killed at {rec['killed_after']:g} s")
        ok = False
    elif "close" in ev and close and close["kind"] != "hang" and "done" in ev and rec["returncode"]:
        parts.append(f"exit status {rec['returncode']}")
    if rec["orphans"]:
        parts.append(f"{len(rec['orphans'])} orphans")
        ok = False
    if rec["shm_new"]:
        parts.append(f"{len(rec['shm_new'])} /dev/shm entries left")
        ok = False
    return "; ".join(parts), ok


def _setup_failure(rec: dict[str, Any]) -> str:
    warm = rec["events"].get("warm")
    if warm is None:
        tail = rec["stderr_tail"].strip().splitlines()
        return "did not start: " + (tail[-1][:60] if tail else f"exit {rec['returncode']}")
    return f"first task: {warm.get('type') or warm['kind']}"


def render(
    records: list[dict[str, Any]], libs: list[str], cases: list[str]
) -> tuple[str, dict[str, tuple[int, int]]]:
    all_cases = _cases()
    by = {(r["lib"], r["case"]): r for r in records}
    header = "| case | " + " | ".join(ADAPTERS[k].label for k in libs) + " |"
    lines = [header, "|" + "---|" * (len(libs) + 1)]
    score: dict[str, list[int]] = {k: [0, 0] for k in libs}
    for c in cases:
        case = all_cases[c]
        row = [case.label]
        for k in libs:
            rec = by.get((k, c))
            if rec is None:
                row.append("")
                continue
            text, ok = judge(rec, case, ADAPTERS[k])
            if ok is not None:
                score[k][1] += 1
                score[k][0] += int(ok)
            mark = {True: "✅ ", False: "❌ ", None: ""}[ok]
            row.append(mark + text.replace("|", "\\|"))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| **passed** | " + " | ".join(f"**{score[k][0]} / {score[k][1]}**" for k in libs)
                 + " |")
    return "\n".join(lines), {k: (v[0], v[1]) for k, v in score.items()}


def _available(lib: str) -> str | None:
    mod = {"joblib": "joblib", "loky": "joblib", "mpire": "mpire", "pebble": "pebble",
           "shoal-pool": "shoal", "shoal-executor": "shoal"}.get(lib)
    if mod is None:
        return None
    import importlib.util

    return None if importlib.util.find_spec(mod) else f"{mod} is not installed"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        lib, case, tmp, wait = argv[1:5]
        child_main(lib, case, tmp, float(wait))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults_matrix",
        description="Run the same faults against shoal and its peers, each case in its own "
        "process with a hard timeout, and print what happened.",
    )
    parser.add_argument("--libs", nargs="+", choices=list(ADAPTERS), default=list(ADAPTERS))
    parser.add_argument("--cases", nargs="+", choices=CASE_KEYS, default=CASE_KEYS)
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="hard limit per case, seconds (default 20)")
    parser.add_argument("--wait", type=float, default=5.0,
                        help="how long a step may wait for an answer before it counts as a "
                        "hang, seconds (default 5)")
    parser.add_argument("--grace", type=float, default=3.0,
                        help="how long a case's processes may take to exit before they count "
                        "as orphans, seconds (default 3)")
    parser.add_argument("--orphan-wait", type=float, default=30.0,
                        help="after the owner is SIGKILLed, how long to watch the processes "
                        "that outlive it, seconds (default 30)")
    parser.add_argument("--json", metavar="PATH", help="write every record here")
    parser.add_argument("--markdown", metavar="PATH", help="write the table here")
    parser.add_argument("--render", metavar="JSON",
                        help="run nothing: print the table of a previous run's --json file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        recs = saved["records"]
        libs = list(dict.fromkeys(r["lib"] for r in recs))
        cases = list(dict.fromkeys(r["case"] for r in recs))
        print(render(recs, libs, cases)[0])
        return 0
    if not _become_subreaper():
        print("warning: could not become a child subreaper; orphans may go unseen",
              file=sys.stderr)
    libs = [k for k in args.libs if _available(k) is None]
    for k in args.libs:
        if k not in libs:
            print(f"skipping {k}: {_available(k)}", file=sys.stderr)
    records = []
    started = time.monotonic()
    for case in args.cases:
        for lib in libs:
            if _cases()[case].needs_time_limit and not ADAPTERS[lib].has_time_limit:
                rec = {"lib": lib, "case": case, "skipped": "the library has no time limit"}
            else:
                rec = run_case(lib, case, timeout=args.timeout, wait=args.wait,
                               grace=args.grace, orphan_wait=args.orphan_wait)
            records.append(rec)
            text, ok = judge(rec, _cases()[case], ADAPTERS[lib])
            mark = {True: "pass", False: "FAIL", None: "n/a "}[ok]
            print(f"[{time.monotonic() - started:6.1f}s] {case:16} {lib:15} {mark} {text}",
                  flush=True)
            if args.verbose and ok is False:
                print("    " + json.dumps(rec["events"], default=repr)[:1500])
                if rec.get("stderr_tail", "").strip():
                    print("    stderr: " + rec["stderr_tail"].strip()[-800:])
    table, score = render(records, libs, args.cases)
    versions = {r["lib"]: r["events"].get("start", {}).get("version")
                for r in records if "events" in r}
    print()
    print(table)
    print()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"python {platform.python_version()}, {platform.platform()}, "
          f"{os.cpu_count()} CPUs; wall time {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"records": records, "versions": versions, "score": score,
             "python": platform.python_version(), "platform": platform.platform(),
             "argv": argv}, indent=1, default=repr))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
