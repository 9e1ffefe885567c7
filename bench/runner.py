"""Interleaved runs: round-robin over the libraries, repeated, one forked child per run; the
median per library. Also the sweeps (task count, worker count)."""

from __future__ import annotations

import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.env import usable_cores
from bench.isolate import run_isolated
from bench.peers import Peer
from bench.workloads import Workload, cpu_workload, tiny_workload

__all__ = ["Cell", "peers_for", "run_grid", "sweep_tasks", "sweep_workers"]


@dataclass
class Cell:
    """Every run of one library on one workload."""

    times: list[float] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    leftovers: list[list[str]] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        # A library that failed any run gets no time: a wrong result is an error, not a time.
        if self.failures or not self.times:
            return None
        return statistics.median(self.times)

    @property
    def spread(self) -> float | None:
        """Half the interquartile range over the median (a relative +-)."""
        if self.median is None or len(self.times) < 4:
            return None
        q = statistics.quantiles(self.times, n=4)
        return (q[2] - q[0]) / 2 / self.median

    def describe_failure(self) -> str:
        first = self.failures[0]
        kinds = "/".join(sorted({f["status"] for f in self.failures}))
        runs = len(self.failures) + len(self.times)
        return f"{kinds} in {len(self.failures)} of {runs} runs: {first.get('error', '')}"


def _measure(workload: Workload, peer: Peer, data: dict[str, Any], workers: int) -> dict[str, Any]:
    """In the child: the timed run, then the check."""
    gc.collect()
    t0 = time.perf_counter()
    out = workload.run(peer, data, workers)
    elapsed = time.perf_counter() - t0
    workload.check(out, data)
    return {"time": elapsed}


def peers_for(workload: Workload, peers: list[Peer]) -> list[Peer]:
    kinds = {workload.kind} | ({"serial"} if workload.serial else set())
    return [p for p in peers if p.kind in kinds]


Log = Callable[[str], None]

#: Task-count sweep points up to this many tasks get three times the rounds (see sweep_tasks).
SMALL_SWEEP = 30_000


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_grid(
    workloads: list[Workload],
    peers: list[Peer],
    repeat: int,
    timeout_scale: float = 1.0,
    log: Log = _default_log,
    verbose: bool = False,
) -> dict[str, dict[str, Cell]]:
    """For each workload: ``repeat`` rounds, each running every library once (the order
    rotating by one each round). Returns ``{workload: {peer key: Cell}}``."""
    results: dict[str, dict[str, Cell]] = {}
    for workload in workloads:
        chosen = peers_for(workload, peers)
        workers = workload.workers or usable_cores()
        t_build = time.perf_counter()
        data = workload.make()
        built = time.perf_counter() - t_build
        cells = {p.key: Cell() for p in chosen}
        started = time.perf_counter()
        for rnd in range(repeat):
            shift = rnd % len(chosen)
            for peer in chosen[shift:] + chosen[:shift]:
                cell = cells[peer.key]
                if any(f["status"] == "timeout" for f in cell.failures):
                    continue  # one timeout is enough: don't spend the deadline again
                outcome = run_isolated(
                    functools.partial(_measure, workload, peer, data, workers),
                    workload.timeout * timeout_scale,
                )
                if outcome.get("leftovers"):
                    cell.leftovers.append(outcome["leftovers"])
                if outcome["status"] == "ok":
                    cell.times.append(outcome["time"])
                    if verbose:
                        log(f"  {workload.name:<14} {peer.label:<28} {outcome['time']:8.3f} s")
                else:
                    cell.failures.append(outcome)
                    log(f"  {workload.name:<14} {peer.label:<28} FAILED: {outcome['error']}")
                    detail = outcome.get("traceback") or outcome.get("stacks") or ""
                    log("    | " + "\n    | ".join(detail.strip().splitlines()[-40:]))
        del data
        summary = "  ".join(
            f"{p.label}={_fmt(cells[p.key].median)}" for p in chosen
        )
        log(f"{workload.name} ({time.perf_counter() - started:.0f} s, input built in "
            f"{built:.1f} s): {summary}")
        results[workload.name] = cells
    return results


def _fmt(value: float | None) -> str:
    return "FAIL" if value is None else f"{value:.3f}"


def sweep_tasks(
    counts: list[int], peers: list[Peer], repeat: int, log: Log = _default_log,
    timeout_scale: float = 1.0,
) -> dict[int, dict[str, Cell]]:
    """Tiny tasks, 10^3 and up: how the cost grows with the number of tasks.

    Up to ``SMALL_SWEEP`` tasks a run takes milliseconds, and the noise of a fresh pool's
    start-up (a millisecond or two on a shared machine) would swamp what the added tasks
    cost: those points get three times the rounds (cheap: they are short)."""
    out = {}
    for n in counts:
        w = tiny_workload(n, name=f"tiny_{n}")
        w.serial = False
        rounds = 3 * repeat if n <= SMALL_SWEEP else repeat
        out[n] = run_grid([w], peers, rounds, timeout_scale, log)[w.name]
    return out


def sweep_workers(
    counts: list[int], peers: list[Peer], repeat: int, steps_per_ms: float, n_tasks: int,
    log: Log = _default_log, timeout_scale: float = 1.0,
) -> dict[int, dict[str, Cell]]:
    """The 1 ms CPU workload on 1..cores workers."""
    out = {}
    for k in counts:
        w = cpu_workload(1, n_tasks, steps_per_ms, name=f"cpu_1ms_{k}w", workers=k)
        out[k] = run_grid([w], peers, repeat, timeout_scale, log)[w.name]
    return out
