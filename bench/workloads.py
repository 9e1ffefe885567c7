"""The workloads: what each builds (in the driver, once, untimed), runs (timed, in a child,
through one peer's adapter) and checks (in the child, untimed: a wrong result is an error).

Sizes come in two sets: the full run's and ``--quick``'s (smaller, for a ~2 minute run).
"""

from __future__ import annotations

import functools
import random
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import tasks
from bench.peers import Peer

__all__ = ["WORKLOADS", "Workload", "build_workloads", "cpu_workload", "tiny_workload"]

MB = 1 << 20


@dataclass
class Workload:
    """One row of the tables."""

    name: str
    title: str  # what it is, for the tables
    make: Callable[[], dict[str, Any]]  # builds the input and the expected result
    run: Callable[[Peer, dict[str, Any], int], Any]  # the timed part
    check: Callable[[Any, dict[str, Any]], None] = field(default=lambda out, data: None)
    kind: str = "process"  # "process" or "thread": which peers run it
    serial: bool = True  # also time it without a pool (the speed-up baseline)
    timeout: float = 60.0  # per run, seconds
    workers: int | None = None  # None: one per usable core
    needs: tuple[str, ...] = ()  # modules it cannot run without (skipped, with a note)


# ---- checks ------------------------------------------------------------------------------


def _check_list(out: Any, data: dict[str, Any]) -> None:
    expected = data["expected"]
    if not isinstance(out, list):
        out = list(out)
    if len(out) != len(expected):
        raise AssertionError(f"wrong result: {len(out)} results, expected {len(expected)}")
    for i, (got, want) in enumerate(zip(out, expected, strict=True)):
        if got != want:
            raise AssertionError(f"wrong result at {i}: {got!r:.80} != {want!r:.80}")


def _check_blocks(out: Any, data: dict[str, Any]) -> None:
    import numpy as np

    out = list(out)
    if len(out) != data["n"]:
        raise AssertionError(f"wrong result: {len(out)} results, expected {data['n']}")
    for i, block in enumerate(out):
        want = (1 + i % 5) * data["unit"]
        if (
            block.dtype != np.uint8
            or block.shape != (want,)
            or block[0] != i % 256
            or not (block[1:] == i % 251).all()
        ):
            raise AssertionError(f"wrong result at {i}: block of {block.shape} {block.dtype}")


def _check_nested(out: Any, data: dict[str, Any]) -> None:
    if [list(batch) for batch in out] != data["expected"]:
        raise AssertionError("wrong result: the batches differ from the serial ones")


def _check_counts(out: Any, data: dict[str, Any]) -> None:
    expected = data["expected"]
    if out != expected:
        missing = sum((expected - out).values())
        extra = sum((out - expected).values())
        raise AssertionError(f"wrong counts: {missing} prefix counts missing, {extra} extra")


# ---- builders ----------------------------------------------------------------------------


def _map_run(fn: Callable[[Any], Any]) -> Callable[[Peer, dict[str, Any], int], Any]:
    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        return peer.map(fn, data["items"], workers)

    return run


def tiny_workload(n: int, name: str = "tiny") -> Workload:
    def make() -> dict[str, Any]:
        items = list(range(n))
        return {"items": items, "expected": [x * x for x in items]}

    return Workload(name, f"{n:,} tiny tasks (x*x)", make, _map_run(tasks.square), _check_list,
                    timeout=60 + n / 2000)


def cpu_workload(ms: float, n: int, steps_per_ms: float, name: str | None = None,
                 workers: int | None = None) -> Workload:
    base = int(steps_per_ms * ms)

    def make() -> dict[str, Any]:
        items = [base + i for i in range(n)]
        return {"items": items, "expected": [tasks.burn_expected(s) for s in items]}

    label = f"{ms:g}" if ms >= 1 else f"{ms:.1f}"
    return Workload(name or f"cpu_{label}ms", f"{n} CPU tasks of {label} ms", make,
                    _map_run(tasks.burn), _check_list, timeout=30 + n * ms / 1000 * 3,
                    workers=workers)


def _uneven(n: int, steps_per_ms: float) -> Workload:
    def make() -> dict[str, Any]:
        rng = random.Random(20240601)
        # Mostly short tasks with a heavy tail, in random order: 85% of 1-3 ms, 15% of 20-80 ms.
        ms = [rng.uniform(20, 80) if rng.random() < 0.15 else rng.uniform(1, 3) for _ in range(n)]
        items = [int(m * steps_per_ms) for m in ms]
        return {"items": items, "expected": [tasks.burn_expected(s) for s in items],
                "total_ms": sum(ms)}

    return Workload("uneven", f"{n} CPU tasks of 1-80 ms, heavy-tailed", make,
                    _map_run(tasks.burn), _check_list, timeout=60 + n * 0.03)


def _init(maps: int, per_map: int, seconds: float) -> Workload:
    token = 1000

    def make() -> dict[str, Any]:
        batches = [list(range(m * per_map, (m + 1) * per_map)) for m in range(maps)]
        return {"batches": batches, "expected": [[x + token for x in b] for b in batches]}

    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        lazy = functools.partial(tasks.use_state_lazily, seconds=seconds, token=token)
        return peer.session(tasks.use_state, data["batches"], workers, tasks.slow_init,
                            (seconds, token), lazy)

    return Workload("init", f"{maps} maps of {per_map} tasks, {seconds * 1000:.0f} ms initializer",
                    make, run, _check_nested, timeout=60)


def _documents(n_docs: int, words: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    letters = string.ascii_lowercase[:12]  # a small alphabet, so prefixes repeat
    docs = []
    for i in range(n_docs):
        # Uneven on purpose: even documents are three times as long as odd ones.
        count = words + words // 2 if i % 2 == 0 else words // 2
        docs.append(["".join(rng.choices(letters, k=8)) for _ in range(count)])
    return docs


def _stateful(n_docs: int, words: int) -> Workload:
    def make() -> dict[str, Any]:
        docs = _documents(n_docs, words)
        expected: Counter[str] = Counter()
        for doc in docs:
            tasks.count_prefixes(expected, doc)
        return {"docs": docs, "expected": expected}

    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        return peer.stateful(data["docs"], workers)

    return Workload("stateful", f"prefix count of {n_docs} documents in per-worker state",
                    make, run, _check_counts, timeout=120)


def _big_arg(size: int, n: int) -> Workload:
    def make() -> dict[str, Any]:
        import numpy as np

        big = np.arange(size // 8, dtype=np.int64)
        step = len(big) // n
        expected = [int(big[i * step : (i + 1) * step].sum()) for i in range(n)]
        return {"big": big, "n": n, "expected": expected}

    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        return peer.big_arg(data["big"], data["n"], workers)

    return Workload("large_arg", f"{size // MB} MB numpy array to {n} tasks", make, run,
                    _check_list, timeout=180, needs=("numpy",))


def _big_results(n: int, unit: int) -> Workload:
    def make() -> dict[str, Any]:
        return {"items": list(range(n)), "n": n, "unit": unit}

    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        return peer.map(functools.partial(tasks.sized_block, unit=unit), data["items"], workers)

    if unit >= MB:
        size = f"{unit // MB}-{5 * unit // MB} MB"
    else:
        size = f"{unit // 1024}-{5 * unit // 1024} KB"
    return Workload("large_results", f"{n} tasks returning {size} each", make, run,
                    _check_blocks, timeout=180, needs=("numpy",))


def _imap(n: int, ms: float, steps_per_ms: float) -> Workload:
    base = int(steps_per_ms * ms)

    def make() -> dict[str, Any]:
        items = [base + i for i in range(n)]
        return {"items": items, "expected": [tasks.burn_expected(s) for s in items]}

    def run(peer: Peer, data: dict[str, Any], workers: int) -> Any:
        return peer.imap(tasks.burn, data["items"], workers)

    return Workload("imap", f"imap over {n} CPU tasks of {ms:g} ms, consumed as they come",
                    make, run, _check_list, timeout=60 + n * ms / 1000 * 3)


def _fixed_cost() -> Workload:
    def make() -> dict[str, Any]:
        return {"items": [1, 2], "expected": [1, 4]}

    return Workload("fixed_cost", "2 tasks on a fresh 2-worker pool", make,
                    _map_run(tasks.square), _check_list, serial=False, timeout=60, workers=2)


def _threads(n: int, ms: float, threads: int) -> Workload:
    def make() -> dict[str, Any]:
        items = [ms / 1000] * n
        return {"items": items, "expected": items}

    return Workload("io_threads", f"{n} tasks of {ms:g} ms sleep on {threads} threads", make,
                    _map_run(tasks.nap), _check_list, kind="thread", serial=False, timeout=60,
                    workers=threads)


#: Workload names in table order.
WORKLOADS = [
    "fixed_cost", "tiny", "cpu_1ms", "cpu_5ms", "cpu_50ms", "uneven", "init", "stateful",
    "large_arg", "large_results", "imap", "io_threads",
]


def build_workloads(quick: bool, steps_per_ms: float) -> dict[str, Workload]:
    """Every workload, sized for a full run or a quick one."""
    q = quick
    built = [
        _fixed_cost(),
        tiny_workload(20_000 if q else 100_000),
        cpu_workload(1, 100 if q else 200, steps_per_ms),
        cpu_workload(5, 40 if q else 200, steps_per_ms),
        cpu_workload(50, 8 if q else 200, steps_per_ms),
        _uneven(60 if q else 200, steps_per_ms),
        _init(10, 10, 0.1),
        _stateful(200 if q else 1000, 300),
        _big_arg(20 * MB if q else 100 * MB, 20 if q else 100),
        _big_results(20 if q else 100, MB // 5 if q else MB),
        _imap(200 if q else 1000, 2, steps_per_ms),
        _threads(300 if q else 1000, 10, 50),
    ]
    by_name = {w.name: w for w in built}
    assert list(by_name) == WORKLOADS, list(by_name)
    return by_name
