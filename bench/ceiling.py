"""How close to ``serial time / workers`` this machine lets any pool get: the CPU workloads run
serially, split by hand over bare forked processes (no pool, no messages, each process given
its half of the items up front: the best any library could do), by ``multiprocessing.Pool``
and by ``shoal.Pool``, interleaved in one run, medians of the repetitions.

On a shared virtual machine two busy processes rarely get two whole cores; the bare split shows
what they do get, so a pool's speed-up can be read against it rather than against 2.00x.

Run: ``python -m bench.ceiling [--repeat N] [--write-docs]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import shoal
from bench import tasks
from bench.calibrate import steps_per_ms
from bench.env import limit_native_threads, load_average, machine_info

DOC = Path(__file__).resolve().parent.parent / "docs" / "ceiling.md"
WORKERS = 2


def _serial(items: list[int]) -> float:
    started = time.perf_counter()
    out = [tasks.burn(x) for x in items]
    took = time.perf_counter() - started
    assert out == [tasks.burn_expected(x) for x in items]
    return took


def _bare_split(items: list[int]) -> float:
    """Each of WORKERS forked processes runs every WORKERS-th item; nothing is sent back."""
    started = time.perf_counter()
    pids = []
    for k in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for x in items[k::WORKERS]:
                    tasks.burn(x)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    return time.perf_counter() - started


def _pool(factory: Callable[[int], object]) -> Callable[[list[int]], float]:
    def run(items: list[int]) -> float:
        started = time.perf_counter()
        with factory(WORKERS) as pool:  # type: ignore[attr-defined]
            out = pool.map(tasks.burn, items)
        took = time.perf_counter() - started
        assert out == [tasks.burn_expected(x) for x in items]
        return took

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOC.name}")
    args = parser.parse_args(argv)
    limit_native_threads()
    load_before = load_average()
    spm = steps_per_ms()
    ways: dict[str, Callable[[list[int]], float]] = {
        "serial": _serial,
        "bare forked split": _bare_split,
        "multiprocessing.Pool": _pool(multiprocessing.get_context().Pool),
        "shoal.Pool": _pool(shoal.Pool),
    }
    rows = []
    for ms in (1.0, 5.0):
        items = [int(spm * ms) + i for i in range(200)]  # distinct, so results are checked
        times: dict[str, list[float]] = {k: [] for k in ways}
        for r in range(args.repeat):
            order = list(ways)
            order = order[r % len(order) :] + order[: r % len(order)]  # rotate: fair to all
            for name in order:
                times[name].append(ways[name](items))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((ms, med))
        print(
            f"200 tasks of {ms:g} ms: "
            + "  ".join(f"{k}={v * 1000:.1f} ms ({med['serial'] / v:.2f}x)" for k, v in med.items())
        )
    if args.write_docs:
        info = machine_info()
        facts = (
            f"{info['cpu']}, {info['cores']}, {info['python']}, {info['shoal source']}; "
            f"load average {load_before} at the start, {load_average()} at the end"
        )
        lines = [
            "# How close to serial / workers this machine lets a pool get",
            "",
            f"Measured with `python -m bench.ceiling --repeat {args.repeat} --write-docs` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {WORKERS} workers, fork, "
            f"medians of interleaved rounds ({facts}). Speed-up is serial time / time.",
            "",
            "The *bare forked split* gives each of two forked processes half of the items up "
            "front and collects nothing: no pool, no messages, the best any library could do. "
            "What it reaches is this machine's ceiling, and the pools are to be read against "
            "it rather than against 2.00x.",
            "",
            "| workload | serial | bare forked split | multiprocessing.Pool | shoal.Pool | "
            "shoal / bare split |",
            "|---|---|---|---|---|---|",
        ]
        for ms, med in rows:
            s = med["serial"]
            cells = [
                f"{med[k] * 1000:.0f} ms ({s / med[k]:.2f}x)"
                for k in ("bare forked split", "multiprocessing.Pool", "shoal.Pool")
            ]
            lines.append(
                f"| 200 tasks of {ms:g} ms | {s * 1000:.0f} ms | " + " | ".join(cells)
                + f" | {med['shoal.Pool'] / med['bare forked split']:.2f}x |"
            )
        DOC.write_text("\n".join(lines) + "\n")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
