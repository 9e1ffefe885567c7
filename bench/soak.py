"""``python -m bench.soak``: many tiny tasks and many worker replacements, and what they cost
the parent process.

Phases, each on a fresh pool that is closed (``close(); join()`` / ``shutdown(wait=True)``) at
its end:

1. ``shoal.Pool``: ``--tasks`` tiny tasks, in rounds of ``map``, ``imap``, ``imap_unordered``
   and ``apply_async``;
2. ``shoal.ProcessPoolExecutor``: ``--tasks`` tiny tasks, in rounds of ``map`` and ``submit``;
3. ``shoal.Pool``, worker deaths: tasks that call ``os._exit(1)``, each among innocent tasks;
4. ``shoal.Pool(maxtasksperchild=1)``: clean retirements;
5. ``shoal.ProcessPoolExecutor``, worker deaths;
6. ``shoal.ProcessPoolExecutor(max_tasks_per_child=1)``: clean retirements (spawn, as the
   stdlib pins it).

``--replacements`` is split evenly over phases 3 to 6. A warm-up runs ``--warmup-rounds``
rounds of phases 1 and 2 and a little of phases 3 to 6 first (imports, caches, the allocators'
high-water mark: the parent's RSS climbs over the first few rounds and then holds), then the
baseline is taken.

Measured in the parent: resident set size (RSS), open file descriptors, threads, Python heap
blocks, entries in ``/dev/shm`` and child processes. fd and thread counts are the median of
readings over one second, so a worker being replaced at that instant does not count.

Bounds (exit status 1 if one is exceeded):

* RSS never grows more than ``--rss-limit`` MiB (10) over the baseline, at any checkpoint;
* while a pool is alive, its fds and threads do not grow with the number of tasks or
  replacements: every checkpoint <= the count after its first round, plus one full pool's
  worth of workers (``FDS_PER_WORKER`` fds and one thread each: an executor starts its
  workers on demand; a leak of one per replacement exceeds that within a few dozen);
* nor does the Python heap grow with the number of replacements: at most
  ``BLOCKS_PER_REPLACEMENT`` blocks (``sys.getallocatedblocks()``) per replacement;
* after the pools are closed, fds, threads, ``/dev/shm`` entries and child processes are back
  to the baseline;
* every result is right, every dying task fails with ``WorkerDied`` and no innocent task fails,
  and the pools really replaced their workers (``statistics().workers_started``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024
#: Python heap blocks a live pool may gain per worker replacement. Noise, mostly this script's
#: own checkpoints, is up to about 6 per replacement with --quick (under 1 in the full run); a
#: pool that keeps its dead workers' bookkeeping gains about 45.
BLOCKS_PER_REPLACEMENT = 15
#: The parent's fds for one worker, at most (its pipes): the slack a live pool's fd count gets
#: over its reference, times the number of workers, since an executor starts workers on demand.
FDS_PER_WORKER = 4

# ---- what the workers run (importable as bench.soak.*, so they pickle by reference) --------


def tiny(x: int) -> int:
    return x + 1


def die(code: int) -> None:
    os._exit(code)


# ---- measuring -------------------------------------------------------------------------------


@dataclass
class Sample:
    label: str
    tasks: int
    replacements: int
    rss: int
    fds: int
    threads: int
    shm_count: int
    children: list[int]
    #: Python heap blocks in use (``sys.getallocatedblocks()``, after a collection)
    blocks: int
    elapsed: float
    #: for checkpoints while a pool is alive: the phase's reference (fds, threads, blocks,
    #: replacements, tasks)
    ref: tuple[int, int, int, int, int] | None = None
    #: the /dev/shm names, kept at the baseline and the end only (a checkpoint's own objects
    #: must not look like the pool's growth)
    shm: list[str] | None = None


class Meter:
    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.tasks = 0
        self.replacements = 0

    def _children(self) -> list[int]:
        import psutil

        out = []
        for c in self.proc.children(recursive=True):
            try:
                if c.status() != psutil.STATUS_ZOMBIE:
                    out.append(c.pid)
            except psutil.Error:
                pass
        return sorted(out)

    def read(self, label: str, quiet: float = 1.0, names: bool = False) -> Sample:
        """The median fd and thread counts over ``quiet`` seconds (and the last RSS): a worker
        being replaced at one instant, one fd pair fewer or more, does not move the median."""
        fds: list[int] = []
        threads: list[int] = []
        deadline = time.monotonic() + quiet
        while True:
            fds.append(self.proc.num_fds())
            threads.append(self.proc.num_threads())
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        gc.collect()
        blocks = sys.getallocatedblocks()  # first, before this reading's own objects
        shm = sorted(os.listdir("/dev/shm"))
        return Sample(
            label=label, tasks=self.tasks, replacements=self.replacements,
            rss=self.proc.memory_info().rss, fds=int(statistics.median_low(fds)),
            threads=int(statistics.median_low(threads)), shm_count=len(shm),
            shm=shm if names else None, children=self._children(),
            blocks=blocks, elapsed=round(time.monotonic() - self.started, 1),
        )

    def checkpoint(self, label: str, ref: Sample | None = None, names: bool = False) -> Sample:
        gc.collect()
        s = self.read(label, names=names)
        if ref is not None:
            s.ref = (ref.fds, ref.threads, ref.blocks, ref.replacements, ref.tasks)
        self.samples.append(s)
        return s

    def settle(self, label: str, baseline: Sample, timeout: float = 15.0) -> Sample:
        """After the pools are closed: wait (up to ``timeout``) for every count to come back."""
        deadline = time.monotonic() + timeout
        while True:
            gc.collect()
            s = self.read(label, names=True)
            back = (s.fds <= baseline.fds and s.threads <= baseline.threads
                    and set(s.shm or ()) <= set(baseline.shm or ())
                    and set(s.children) <= set(baseline.children))
            if back or time.monotonic() >= deadline:
                break
        self.samples.append(s)
        return s


class Failures(list[str]):
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.append(what)


# ---- the workloads ---------------------------------------------------------------------------


def _rounds(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        n = min(size, total - done)
        yield n
        done += n


#: Calls of one task each (apply_async, submit) are made in windows of this many, and maps
#: over at most ``MAP_CALL`` items, so the benchmark's own transient objects (futures, result
#: lists) stay small next to what the soak looks for.
WINDOW = 1_000
MAP_CALL = 10_000


def _spans(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(total, start + size))


def pool_round(pool: Any, n: int, failures: Failures) -> None:
    from bench import soak as me  # by reference: the workers import bench.soak

    a, b, c = n // 2, n // 5, n // 5
    d = n - a - b - c
    for span in _spans(a, MAP_CALL):
        failures.check(pool.map(me.tiny, span) == [x + 1 for x in span], "Pool.map: wrong results")
    failures.check(sum(pool.imap(me.tiny, range(b), chunksize=64)) == b * (b + 1) // 2,
                   "Pool.imap: wrong results")
    failures.check(sorted(pool.imap_unordered(me.tiny, range(c), chunksize=64))
                   == list(range(1, c + 1)), "Pool.imap_unordered: wrong results")
    for span in _spans(d, WINDOW):
        results = [pool.apply_async(me.tiny, (i,)) for i in span]
        failures.check([r.get(60) for r in results] == [x + 1 for x in span],
                       "Pool.apply_async: wrong results")


def executor_round(ex: Any, n: int, failures: Failures) -> None:
    from bench import soak as me

    a = n * 9 // 10
    d = n - a
    for span in _spans(a, MAP_CALL):
        failures.check(sum(ex.map(me.tiny, span, chunksize=64)) == sum(span) + len(span),
                       "Executor.map: wrong results")
    for span in _spans(d, WINDOW):
        futures = [ex.submit(me.tiny, i) for i in span]
        failures.check([f.result(60) for f in futures] == [x + 1 for x in span],
                       "Executor.submit: wrong results")


def deaths_batch(pool: Any, kind: str, n: int, failures: Failures) -> None:
    """``n`` tasks that kill their worker, each followed by three innocent ones."""
    import shoal
    from bench import soak as me

    if kind == "pool":
        def submit(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
            r = pool.apply_async(fn, args)
            return lambda: r.get(60)
    else:
        def submit(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
            f = pool.submit(fn, *args)
            return lambda: f.result(60)

    jobs = []
    for i in range(n):
        jobs.append(("die", submit(me.die, 1)))
        jobs.extend(("ok", submit(me.tiny, 3 * i + j)) for j in range(3))
    good = 0
    for what, get in jobs:
        try:
            value = get()
        except shoal.WorkerDied as exc:
            failures.check(what == "die" and exc.exitcode == 1,
                           f"{kind}: unexpected WorkerDied: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - any other failure is a finding, reported
            failures.append(f"{kind}: {what} task failed with {type(exc).__name__}: {exc}")
            continue
        failures.check(what == "ok", f"{kind}: a dying task returned {value!r}")
        good += 1
    failures.check(good == 3 * n, f"{kind}: {3 * n - good} innocent tasks lost")


def retire_batch(pool: Any, kind: str, n: int, failures: Failures) -> None:
    from bench import soak as me

    if kind == "pool":
        got = pool.map(me.tiny, range(n), chunksize=1)
    else:
        got = [f.result(120) for f in [pool.submit(me.tiny, i) for i in range(n)]]
    failures.check(got == list(range(1, n + 1)), f"{kind} (retiring workers): wrong results")


# ---- the run ---------------------------------------------------------------------------------


@contextmanager
def _closing(pool: Any, kind: str) -> Iterator[Any]:
    try:
        yield pool
    finally:
        if kind == "pool":
            pool.close()
            pool.join()
        else:
            pool.shutdown(wait=True)


def _started(pool: Any) -> int:
    return int(pool.statistics().workers_started)


def run(args: argparse.Namespace) -> tuple[Meter, Sample, list[str], dict[str, Any]]:
    import shoal

    meter = Meter()
    failures = Failures()
    info: dict[str, Any] = {}
    rnd = max(1, min(100_000, args.tasks // 10))
    per_kind = args.replacements // 4
    batch = max(1, min(50, per_kind // 5 or 1))

    def log(msg: str) -> None:
        if args.verbose:
            print(f"[{time.monotonic() - meter.started:7.1f}s] {msg}", flush=True)

    # -- warm-up: a little of everything, so imports, caches and arenas exist before the baseline
    log("warm-up")
    # The parent's RSS climbs over the first few rounds (the allocators settle: Python's heap
    # blocks stay flat) and then holds; the baseline is taken once it holds.
    for _ in range(args.warmup_rounds):
        with _closing(shoal.Pool(args.workers), "pool") as pool:
            pool_round(pool, rnd, failures)
        with _closing(shoal.ProcessPoolExecutor(args.workers), "executor") as ex:
            executor_round(ex, rnd, failures)
    with _closing(shoal.Pool(args.workers), "pool") as pool:
        deaths_batch(pool, "pool", 5, failures)
    with _closing(shoal.Pool(args.workers, maxtasksperchild=1), "pool") as pool:
        retire_batch(pool, "pool", 10, failures)
    with _closing(shoal.ProcessPoolExecutor(args.workers), "executor") as ex:
        deaths_batch(ex, "executor", 5, failures)
    with _closing(shoal.ProcessPoolExecutor(args.workers, max_tasks_per_child=1), "executor") as ex:
        retire_batch(ex, "executor", 4, failures)
    meter.read("warm-up", quiet=1.0)  # let the last workers go
    baseline = meter.checkpoint("start (after warm-up)", names=True)
    failures.clear()  # the warm-up's own checks are not the soak's

    def tasks_phase(kind: str) -> None:
        label = "Pool" if kind == "pool" else "Executor"
        pool: Any = (shoal.Pool(args.workers) if kind == "pool"
                     else shoal.ProcessPoolExecutor(args.workers))
        do = pool_round if kind == "pool" else executor_round
        with _closing(pool, kind):
            ref: Sample | None = None
            marks = {args.tasks * q // 4 for q in (1, 2, 3, 4)}
            done = 0
            for n in _rounds(args.tasks, rnd):
                do(pool, n, failures)
                done += n
                meter.tasks += n
                if ref is None:
                    ref = meter.read(f"{label}: reference")
                if any(done >= m > done - n for m in marks):
                    meter.checkpoint(f"{label}: {done:,} tasks", ref)
                    log(f"{label}: {done:,} tasks")
            info[f"{label.lower()}_tasks_stats"] = str(pool.statistics()).splitlines()[:3]
        meter.checkpoint(f"{label}: closed")

    def replacement_phase(kind: str, how: str) -> None:
        label = ("Pool" if kind == "pool" else "Executor") + (
            " deaths" if how == "die" else " retirements")
        if kind == "pool":
            pool = shoal.Pool(args.workers, maxtasksperchild=1 if how == "retire" else None)
        else:
            pool = shoal.ProcessPoolExecutor(
                args.workers, max_tasks_per_child=1 if how == "retire" else None)
        with _closing(pool, kind):
            retire_batch(pool, kind, args.workers, failures)  # a few tasks: workers start
            first = _started(pool)
            ref: Sample | None = None
            marks = {per_kind * q // 4 for q in (1, 2, 3, 4)}
            done = 0
            for n in _rounds(per_kind, batch):
                if how == "die":
                    deaths_batch(pool, kind, n, failures)
                else:
                    retire_batch(pool, kind, n, failures)
                done += n
                meter.replacements += n
                meter.tasks += n * (4 if how == "die" else 1)
                if ref is None:
                    ref = meter.read(f"{label}: reference")
                if any(done >= m > done - n for m in marks):
                    meter.checkpoint(f"{label}: {done}", ref)
                    log(f"{label}: {done}")
            stats = pool.statistics()
            replaced = _started(pool) - first
            info[label] = {"workers_started": stats.workers_started,
                           "workers_lost": stats.workers_lost, "replaced": replaced}
            # Deaths: each dying task takes its worker down. Retirements: each task retires one.
            failures.check(replaced >= per_kind - args.workers,
                           f"{label}: only {replaced} workers started for {per_kind} replacements")
            if how == "die":
                failures.check(stats.workers_lost >= per_kind,
                               f"{label}: statistics count {stats.workers_lost} lost workers")
        meter.checkpoint(f"{label}: closed")

    log("tasks")
    tasks_phase("pool")
    tasks_phase("executor")
    log("replacements")
    replacement_phase("pool", "die")
    replacement_phase("pool", "retire")
    replacement_phase("executor", "die")
    replacement_phase("executor", "retire")
    end = meter.settle("end (all pools closed)", baseline)
    return meter, baseline, failures, info | {"end": asdict(end)}


def verdict(
    meter: Meter, baseline: Sample, failures: list[str], rss_limit: float, workers: int
) -> list[str]:
    problems = list(failures)
    peak = max(meter.samples, key=lambda s: s.rss)
    growth = (peak.rss - baseline.rss) / MiB
    if growth >= rss_limit:
        problems.append(f"RSS grew {growth:.1f} MiB (at '{peak.label}'), limit {rss_limit:g} MiB")
    for s in meter.samples:
        if s.ref is not None:
            # An executor starts workers on demand, so a reading may catch one worker more
            # than its reference did: allow a full pool's worth, never more.
            if s.fds > s.ref[0] + FDS_PER_WORKER * workers:
                problems.append(f"fds grew while the pool was alive: {s.ref[0]} -> {s.fds} "
                                f"at '{s.label}'")
            if s.threads > s.ref[1] + workers:
                problems.append(f"threads grew while the pool was alive: {s.ref[1]} -> "
                                f"{s.threads} at '{s.label}'")
    # Python objects kept per replacement, over each live pool's phase (its last checkpoint
    # against its reference): a pool that keeps something of every worker it ever had grows.
    for s, nxt in zip(meter.samples, meter.samples[1:], strict=False):
        if s.ref is None or nxt.ref is not None:
            continue
        replaced = s.replacements - s.ref[3]
        if replaced > 0:
            per = (s.blocks - s.ref[2]) / replaced
            if per > BLOCKS_PER_REPLACEMENT:
                problems.append(
                    f"Python heap grew with replacements while the pool was alive: "
                    f"{s.ref[2]:,} -> {s.blocks:,} blocks over {replaced} replacements "
                    f"({per:.0f} per replacement, limit {BLOCKS_PER_REPLACEMENT}) at '{s.label}'")
    end = meter.samples[-1]
    if end.fds != baseline.fds:
        problems.append(f"open fds: {baseline.fds} at start, {end.fds} at the end")
    if end.threads != baseline.threads:
        problems.append(f"threads: {baseline.threads} at start, {end.threads} at the end")
    new_shm = sorted(set(end.shm or ()) - set(baseline.shm or ()))
    if new_shm:
        problems.append(f"/dev/shm entries left: {new_shm}")
    new_children = sorted(set(end.children) - set(baseline.children))
    if new_children:
        problems.append(f"child processes left: {new_children}")
    return problems


def table(meter: Meter, baseline: Sample) -> str:
    rows = ["| checkpoint | tasks | replacements | RSS MiB | ΔRSS MiB | fds | threads | "
            "/dev/shm | children | py blocks | t (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in meter.samples:
        fds = f"{s.fds}" + (f" (ref {s.ref[0]})" if s.ref else "")
        threads = f"{s.threads}" + (f" (ref {s.ref[1]})" if s.ref else "")
        rows.append(
            f"| {s.label} | {s.tasks:,} | {s.replacements:,} | {s.rss / MiB:.1f} | "
            f"{(s.rss - baseline.rss) / MiB:+.1f} | {fds} | {threads} | {s.shm_count} | "
            f"{len(s.children)} | {s.blocks:,} | {s.elapsed:g} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Push many tiny tasks and many worker replacements through shoal and check "
        "that the parent's memory, fds, threads, /dev/shm and children stay bounded.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="100,000 tasks per facade and 100 replacements (a short run)")
    parser.add_argument("--tasks", type=int, help="tiny tasks per facade (default 1,000,000)")
    parser.add_argument("--replacements", type=int,
                        help="worker replacements in all, split over deaths and retirements "
                        "of Pool and executor (default 1,000)")
    parser.add_argument("--workers", type=int, default=2, help="workers per pool (default 2)")
    parser.add_argument("--warmup-rounds", type=int, default=2, metavar="N",
                        help="rounds of tasks per facade before the baseline (default 2; one "
                        "round is a tenth of --tasks, at most 100,000)")
    parser.add_argument("--rss-limit", type=float, default=10.0, metavar="MIB",
                        help="allowed RSS growth over the baseline (default 10 MiB)")
    parser.add_argument("--json", metavar="PATH", help="write every sample here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 100_000 if args.quick else 1_000_000
    if args.replacements is None:
        args.replacements = 100 if args.quick else 1_000
    if args.tasks < 1 or args.replacements < 4:
        parser.error("need --tasks >= 1 and --replacements >= 4")

    import shoal

    started = time.monotonic()
    meter, baseline, failures, info = run(args)
    wall = time.monotonic() - started
    problems = verdict(meter, baseline, failures, args.rss_limit, args.workers)
    print(table(meter, baseline))
    print()
    for key in ("Pool deaths", "Pool retirements", "Executor deaths", "Executor retirements"):
        if key in info:
            print(f"{key}: {info[key]}")
    print(f"shoal {shoal.__version__} ({os.path.dirname(shoal.__file__)}), python "
          f"{platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{args.tasks:,} tasks per facade, {args.replacements:,} replacements, "
          f"{args.workers} workers per pool; wall time {wall:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples": [asdict(s) for s in meter.samples], "baseline": asdict(baseline),
                       "problems": problems, "info": info, "wall": wall,
                       "args": vars(args)}, f, indent=1, default=repr)
    if problems:
        print("\nFAILED:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("\nOK: RSS growth, fds, threads, Python heap, /dev/shm and children within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
