"""What a timeline costs: the same shoal.Pool workloads with tracing off and on, interleaved in
one run, medians of the repetitions (the "Visible" issue's bound: under 1% when off, under 5%
when on, on 100,000 tiny tasks and on 1 ms tasks).

Off costs one attribute check per chunk in the manager (no listener: no ``TRACED`` flag, so the
worker takes its untimed fast path); it is measured against the same code, so what this shows
for "off" is the run-to-run noise floor. On: the worker times each task (or, for tasks under
about 100 us, each chunk) and the parent builds one event per task or chunk.

Run: ``python -m bench.trace_cost [--repeat N] [--write-docs]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import shoal
from bench import tasks
from bench.calibrate import steps_per_ms

DOC = Path(__file__).resolve().parent.parent / "docs" / "trace_cost.md"


def _run(trace: bool, fn: object, items: list[int], chunksize: int | None) -> float:
    started = time.perf_counter()
    with shoal.Pool(2, trace=trace) as pool:
        out = pool.map(fn, items, chunksize)  # type: ignore[arg-type]
    took = time.perf_counter() - started
    # Outside the timing: let the pool's workers end, so the next run does not share the CPUs
    # with this one's teardown (with exits at once; its workers go in the background).
    pool.join()
    if trace and not pool.timeline.tasks():
        raise AssertionError("tracing recorded nothing")
    return took if out is not None else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_cost")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    one_ms = int(steps_per_ms())
    workloads = {
        "100k tiny tasks": (tasks.square, list(range(100_000)), None,
                            [x * x for x in range(100_000)]),
        "200 tasks of 1 ms": (tasks.burn, [one_ms] * 200, None,
                              [tasks.burn_expected(one_ms)] * 200),
    }
    rows = []
    for name, (fn, items, chunksize, expected) in workloads.items():
        with shoal.Pool(2) as pool:  # results are checked once, outside the timing
            assert pool.map(fn, items, chunksize) == expected
        off: list[float] = []
        on: list[float] = []
        for rep in range(args.repeat):
            order = (False, True) if rep % 2 == 0 else (True, False)  # neither always goes first
            for trace in order:
                (on if trace else off).append(_run(trace, fn, items, chunksize))
        m_off, m_on = statistics.median(off), statistics.median(on)
        rows.append((name, m_off, m_on, m_on / m_off))
    lines = [
        "| workload | trace off | trace on | on / off |",
        "|---|---|---|---|",
        *(f"| {n} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {r:.3f}x |" for n, a, b, r in rows),
    ]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        DOC.write_text(
            "# What tracing costs\n\n"
            f"Measured with `python -m bench.trace_cost --repeat {args.repeat} --write-docs` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2 workers, fork, medians of "
            "interleaved runs, pool start-up and shut-down included (2 cores, shared machine: "
            "read ratios, not times).\n\n"
            + table
            + "\n\nWith tracing off the backend checks one attribute per chunk and the worker "
            "runs its untimed fast path, so \"off\" is the code every untraced pool runs.\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
