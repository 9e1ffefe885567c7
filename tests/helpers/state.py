"""Tasks, initializers and exit functions that use ``shoal.worker_state()``, importable by name
under every start method."""

from __future__ import annotations

import os
import threading
from typing import Any

import shoal

#: A liveness ceiling for barriers (never a timing).
CEILING = 60.0


def worker_id() -> str:
    """Which worker this is: a process and a thread (a thread pool's workers share a pid)."""
    return f"{os.getpid()}/{threading.current_thread().name}"


def seed(value: Any) -> None:
    """An initializer that fills the state before any task runs."""
    shoal.worker_state()["seed"] = value


def bump(_: Any = None) -> tuple[str, int]:
    """Count this task in the worker's state: (worker, how many tasks it has run)."""
    state = shoal.worker_state()
    state["n"] = state.get("n", 0) + 1
    return worker_id(), state["n"]


def meet_then_bump(barrier: Any) -> tuple[str, int]:
    """Wait until as many tasks as the barrier's parties run at once (one per thread)."""
    barrier.wait(CEILING)
    return bump()


def report() -> tuple[str, int, Any]:
    """A worker_exit: (worker, tasks it ran, what the initializer put there)."""
    state = shoal.worker_state()
    return worker_id(), state.get("n", 0), state.get("seed")


def exit_raises() -> None:
    raise ValueError(f"no report from {worker_id()}")


def exit_unpicklable() -> Any:
    return threading.Lock()


def exit_announces_and_waits(fifo: str, lock: str) -> str:
    """A worker_exit that says it started and waits for the test (helpers.blocking's gate)."""
    from helpers.blocking import announce_and_wait

    announce_and_wait(fifo, lock)
    return worker_id()


def seen_from_a_thread() -> bool:
    """True if a thread the task starts sees the same state as the task (a process worker)."""
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.append(shoal.worker_state()))
    t.start()
    t.join()
    return seen[0] is shoal.worker_state()


def grow_state(megabytes: int) -> tuple[str, int]:
    """Keep ``megabytes`` of touched memory in the worker's state (the memory guard's case: a
    state that keeps growing), and count the task."""
    shoal.worker_state().setdefault("held", []).append(bytearray(b"x" * (megabytes << 20)))
    return bump()


def announce_exit(fifo: str) -> str:
    """A worker_exit that writes its pid to ``fifo`` (helpers.blocking's gate) as it runs."""
    with open(fifo, "w") as f:
        f.write(f"{os.getpid()}\n")
    return worker_id()


def add_to_array(i: int) -> None:
    """Add to a numpy array kept in the worker's state (large: it travels out of band)."""
    import numpy as np

    state = shoal.worker_state()
    if "array" not in state:
        state["array"] = np.zeros(1 << 18, dtype=np.int64)  # 2 MiB
    state["array"][i % len(state["array"])] += i


def array_exit() -> Any:
    return shoal.worker_state().get("array")
