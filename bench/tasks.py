"""The functions workers run. Module-level and importable (``bench.tasks``), so every library
can send them by reference, whatever its start method or pickler."""

from __future__ import annotations

import time
from collections import Counter
from multiprocessing.managers import BaseManager
from typing import Any

# ---- tiny and CPU-bound ------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def burn(n: int) -> int:
    """A pure-Python busy loop of ``n`` steps (no sleep: it holds a core). Every step costs the
    same (the value stays a one-digit int), so steps scale linearly to time. Returns the XOR
    of ``range(n)``, which :func:`burn_expected` knows in closed form."""
    total = 0
    for i in range(n):
        total ^= i
    return total


def burn_expected(n: int) -> int:
    m = n - 1
    if m < 0:
        return 0
    return (m, 1, m + 1, 0)[m % 4]


def nap(seconds: float) -> float:
    """I/O stand-in for the thread pools: sleeps, returns its argument."""
    time.sleep(seconds)
    return seconds


# ---- expensive initializer ---------------------------------------------------------------

_STATE: int | None = None


def slow_init(seconds: float, token: int) -> None:
    """The expensive initializer: ~``seconds`` of set-up (a model load, a connection), then a
    global the tasks read."""
    global _STATE
    time.sleep(seconds)
    _STATE = token


def use_state(x: int) -> int:
    if _STATE is None:
        raise RuntimeError("the initializer did not run in this worker")
    return x + _STATE


def use_state_lazily(x: int, seconds: float, token: int) -> int:
    """For libraries without an initializer hook (joblib): set up on first use per worker."""
    if _STATE is None:
        slow_init(seconds, token)
    return use_state(x)


# ---- large argument, large results -------------------------------------------------------


def slice_sum(big: Any, i: int, parts: int) -> int:
    """Sum of the i-th of ``parts`` slices of a big int64 array."""
    step = len(big) // parts
    return int(big[i * step : (i + 1) * step].sum())


def shared_slice_sum(big: Any, i: int, parts: int) -> int:
    """mpire's ``shared_objects`` form (the shared object comes first)."""
    return slice_sum(big, i, parts)


def make_block(i: int, size: int) -> Any:
    """A result of ``size`` bytes whose content depends on ``i``."""
    import numpy as np

    block = np.full(size, i % 251, dtype=np.uint8)
    block[0] = i % 256
    return block


# ---- stateful: a streaming prefix count --------------------------------------------------


def count_prefixes(counter: Counter[str], document: list[str]) -> None:
    for word in document:
        for i in range(1, len(word)):
            counter[word[:i]] += 1


class PrefixCounter:
    """One per worker slot: documents are added one by one, the counts merged at the end."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, document: list[str]) -> None:
        count_prefixes(self.counts, document)

    def result(self) -> Counter[str]:
        return self.counts


class CounterManager(BaseManager):
    """The stdlib's idiom for state that outlives a task: an object in a manager process."""


CounterManager.register("PrefixCounter", PrefixCounter)


def add_to_actor(pair: tuple[Any, list[str]]) -> None:
    actor, document = pair
    actor.add(document)


def state_init(worker_state: dict[str, Any]) -> None:
    """mpire's worker state: set up once per worker..."""
    worker_state["counts"] = Counter()


def state_add(worker_state: dict[str, Any], document: list[str]) -> None:
    """...updated by every task the worker runs..."""
    count_prefixes(worker_state["counts"], document)


def state_exit(worker_state: dict[str, Any]) -> Counter[str]:
    """...and handed back when the worker exits."""
    return worker_state["counts"]


def shoal_state_add(document: list[str]) -> None:
    """shoal's worker state: each task adds to its worker's own counter..."""
    import shoal

    state = shoal.worker_state()
    counts = state.get("counts")
    if counts is None:
        counts = state["counts"] = Counter()
    count_prefixes(counts, document)


def shoal_state_exit() -> Counter[str]:
    """...which ``worker_exit`` hands back as the worker retires (empty if it ran no task)."""
    import shoal

    return shoal.worker_state().get("counts", Counter())


def sized_block(i: int, unit: int) -> Any:
    """Task i's result: ``(1 + i % 5) * unit`` bytes."""
    return make_block(i, (1 + i % 5) * unit)
