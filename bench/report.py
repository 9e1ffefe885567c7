"""The tables: for the terminal and for ``docs/benchmarks.md``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from bench.peers import PEERS, Peer
from bench.runner import SMALL_SWEEP, Cell
from bench.workloads import Workload

__all__ = ["Row", "render", "summarize"]


@dataclass
class Row:
    """One workload, reduced: shoal's best variant against the fastest other library."""

    workload: Workload
    shoal_key: str | None
    shoal_time: float | None
    peer_key: str | None
    peer_time: float | None
    serial_time: float | None

    @property
    def ratio(self) -> float | None:
        if self.shoal_time is None or self.peer_time is None:
            return None
        return self.shoal_time / self.peer_time


#: What is known of why shoal is slower on a workload, when it is: said next to the number.
SLOWER_WHY = {
    "fixed_cost": (
        "Under fork a pool keeps a zygote (DESIGN.md), so that a worker it starts later never "
        "inherits a lock held by a thread of the pool's process at that moment "
        "(`tests/test_fork_safety.py`): a third process to fork and to end. "
        "`python -m bench.startup` (docs/startup.md) measures the floor of that rule, a bare "
        "prototype with a zygote, against the stdlib."
    ),
}


def _best(cells: dict[str, Cell], keys: list[str]) -> tuple[str | None, float | None]:
    timed = [(cells[k].median, k) for k in keys if k in cells and cells[k].median is not None]
    if not timed:
        return None, None
    t, k = min(timed)
    return k, t


def summarize(workloads: dict[str, Workload], results: dict[str, dict[str, Cell]],
              peers: list[Peer]) -> list[Row]:
    by_key = {p.key: p for p in peers}
    rows = []
    for name, cells in results.items():
        shoal = [k for k in cells if by_key[k].is_shoal]
        others = [k for k in cells if not by_key[k].is_shoal and by_key[k].kind != "serial"]
        s_key, s_time = _best(cells, shoal)
        p_key, p_time = _best(cells, others)
        serial = cells["serial"].median if "serial" in cells else None
        rows.append(Row(workloads[name], s_key, s_time, p_key, p_time, serial))
    return rows


def _t(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _cell(cell: Cell | None, fastest_peer: float | None) -> str:
    if cell is None:
        return ""
    if cell.median is None:
        if not cell.failures:
            return "skipped"
        status = cell.failures[0]["status"]
        return "**TIMEOUT**" if status == "timeout" else "**FAILED**"
    text = _t(cell.median)
    if cell.spread is not None and cell.spread >= 0.1:
        text += f" ±{cell.spread * 100:.0f}%"
    if fastest_peer:
        text += f" ({cell.median / fastest_peer:.2f}x)"
    return text


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return lines


def _summary_table(rows: list[Row], labels: dict[str, str]) -> list[str]:
    body = []
    for r in rows:
        ratio = r.ratio
        mark = ""
        if ratio is not None and ratio > 1.1:
            mark = " (slower)"
        speedup = "-"
        if r.serial_time and r.shoal_time and r.peer_time:
            speedup = f"{r.serial_time / r.shoal_time:.2f}x / {r.serial_time / r.peer_time:.2f}x"
        body.append([
            f"`{r.workload.name}`", r.workload.title,
            f"{_t(r.shoal_time)} ({labels.get(r.shoal_key or '', '-')})",
            f"{_t(r.peer_time)} ({labels.get(r.peer_key or '', '-')})",
            f"**{_x(ratio)}**{mark}", speedup,
        ])
    return _table(["workload", "what", "shoal (best of its two)", "fastest peer",
                   "shoal / fastest peer", "speed-up vs serial: shoal / peer"], body)


def _full_table(results: dict[str, dict[str, Cell]], rows: list[Row], peers: list[Peer],
                kind: str) -> list[str]:
    names = [r.workload.name for r in rows if r.workload.kind == kind]
    if not names:
        return []
    used = [p for p in peers if any(p.key in results[n] for n in names)]
    fastest = {r.workload.name: r.peer_time for r in rows}
    body = [[f"`{n}`"] + [_cell(results[n].get(p.key), fastest[n]) for p in used] for n in names]
    return _table(["workload"] + [p.label for p in used], body)


def _sweep_table(sweep: dict[int, dict[str, Cell]], peers: list[Peer], what: str,
                 per_task: int | None = None) -> list[str]:
    if not sweep:
        return []
    keys = [p for p in peers if any(p.key in cells for cells in sweep.values())]
    body = []
    before: dict[str, tuple[int, float]] = {}  # peer -> (tasks, time) of the row above
    for x, cells in sweep.items():
        row = [f"{x:,}"]
        for p in keys:
            c = cells.get(p.key)
            if c is None or c.median is None:
                row.append(_cell(c, None))
            elif per_task:
                text = f"{_t(c.median)} ({c.median / x * 1e6:.2f} µs/task"
                if p.key in before:
                    n0, t0 = before[p.key]
                    text += f"; +{(c.median - t0) / (x - n0) * 1e6:.2f} µs per added task"
                row.append(text + ")")
                before[p.key] = (x, c.median)
            else:
                row.append(_t(c.median))
        body.append(row)
    return _table([what] + [p.label for p in keys], body)


def _points(sweep: dict[int, dict[str, Cell]], key: str, low: int) -> list[tuple[int, float]]:
    points: list[tuple[int, float]] = []
    for x, cells in sweep.items():
        median = cells[key].median if key in cells else None
        if x >= low and median is not None:
            points.append((x, median))
    return points


def line_fit(
    sweep: dict[int, dict[str, Cell]], key: str, low: int = 10_000
) -> tuple[float, float] | None:
    """``(fixed, slope)`` of the least-squares line ``time = fixed + slope * tasks`` through a
    library's medians from ``low`` tasks up (None with fewer than three points)."""
    points = _points(sweep, key, low)
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(t for _, t in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (t - my) for x, t in points) / sxx
    return my - slope * mx, slope


def linearity(sweep: dict[int, dict[str, Cell]], key: str, low: int = 10_000) -> str | None:
    """How linear a library's time is in the number of tasks, from ``low`` tasks up: the
    least-squares line through the medians (``line_fit``), and how far each step's cost per
    added task (and each point's time) is from that line."""
    fit = line_fit(sweep, key, low)
    if fit is None:
        return None
    fixed, slope = fit
    points = _points(sweep, key, low)
    steps = [(t1 - t0) / (x1 - x0) for (x0, t0), (x1, t1) in itertools.pairwise(points)]
    step_dev = max(abs(s / slope - 1) for s in steps)
    fit_dev = max(abs(t / (fixed + slope * x) - 1) for x, t in points)
    per_task = [t / x for x, t in points]
    spread = max(per_task) / min(per_task)
    return (
        f"line through {points[0][0]:,}..{points[-1][0]:,} tasks: {_t(fixed)} + "
        f"{slope * 1e6:.3f} µs per task; each step adds {min(steps) * 1e6:.3f}-"
        f"{max(steps) * 1e6:.3f} µs per added task (within ±{step_dev:.0%} of the slope), every "
        f"point within ±{fit_dev:.0%} of the line; time per task (fixed cost included) varies "
        f"{spread:.1f}x over the range"
    )


def render(
    *,
    info: dict[str, str],
    command: str,
    wall: float,
    workloads: dict[str, Workload],
    results: dict[str, dict[str, Cell]],
    sweeps: dict[str, dict[int, dict[str, Cell]]],
    peers: list[Peer],
    skipped: dict[str, str],
    repeat: int,
    quick: bool,
    steps_per_ms: float,
    chart: str | None = None,
) -> str:
    labels = {p.key: p.label for p in peers}
    rows = summarize(workloads, results, peers)
    out: list[str] = ["# Benchmarks", ""]
    out += [
        f"Measured with `{command}` ({'quick' if quick else 'full'} run, median of {repeat} "
        f"interleaved runs per cell; the whole command took {wall / 60:.1f} min). "
        "Regenerate with `python -m bench --write-docs` (about the same time) or "
        "`python -m bench --quick --write-docs` (about 2 minutes, smaller sizes, noisier); "
        "redraw these tables and the chart from the raw times kept in `benchmarks.json` with "
        "`python -m bench --from-json docs/benchmarks.json --write-docs`.",
        "",
        "## Machine",
        "",
    ]
    out += _table(["", ""], [[k, v] for k, v in info.items()])
    out += ["", f"Busy loop calibrated at {steps_per_ms:,.0f} steps/ms on this machine.", ""]

    out += ["## Summary: shoal against the fastest other library", "",
            "Times are medians, start-up and shut-down of the pool included. "
            "*shoal / fastest peer* below 1.00x means shoal is faster. Speed-up vs serial is "
            "serial time / time; on 2 cores 2.00x is the ceiling.", ""]
    out += _summary_table(rows, labels)
    slower = [r for r in rows if r.ratio is not None and r.ratio > 1.05]
    if slower:
        out += ["", "Where shoal is slower than the fastest peer (by more than 5%):", ""]
        for r in sorted(slower, key=lambda r: -(r.ratio or 0)):
            out.append(f"- `{r.workload.name}`: {_x(r.ratio)} of {labels.get(r.peer_key or '')} "
                       f"({_t(r.shoal_time)} against {_t(r.peer_time)})."
                       + (f" {SLOWER_WHY[r.workload.name]}" if r.workload.name in SLOWER_WHY
                          else ""))
    if chart:
        out += ["", f"![sweeps and ratios]({chart})"]

    out += ["", "## Every library: process pools", "",
            "Median time (ratio to the fastest non-shoal library). ±: half the interquartile "
            "range, shown when 10% or more.", ""]
    out += _full_table(results, rows, peers, "process")
    thread_rows = _full_table(results, rows, peers, "thread")
    if thread_rows:
        out += ["", "## Every library: thread pools (I/O)", "", *thread_rows]

    if sweeps.get("tasks"):
        out += ["", "## Sweep: number of tiny tasks", "",
                "`x*x` on a fresh pool; time and cost per task. shoal and the libraries "
                "fastest on the `tiny` workload. Points up to "
                f"{SMALL_SWEEP:,} tasks are medians of three times as many rounds (they take "
                "milliseconds, and a fresh pool's start-up varies by about as much as their "
                "added tasks cost).", ""]
        out += _sweep_table(sweeps["tasks"], peers, "tasks", per_task=1)
        fits = [(p.label, linearity(sweeps["tasks"], p.key)) for p in peers]
        fits = [(label, fit) for label, fit in fits if fit is not None]
        if fits:
            out += ["", "Linearity (least squares on the medians, 10,000 tasks and up): the "
                    "time is a fixed cost plus a cost per task; at 10,000 tiny tasks the fixed "
                    "cost (a fresh pool) still dominates, so time per task only settles from "
                    "100,000 tasks on.", ""]
            out += [f"- {label}: {fit}." for label, fit in fits]
    if sweeps.get("workers"):
        out += ["", "## Sweep: number of workers", "",
                "The 1 ms CPU workload on 1 to all cores.", ""]
        out += _sweep_table(sweeps["workers"], peers, "workers")

    notes = _notes(results, sweeps, labels, skipped)
    if notes:
        out += ["", "## Failures and notes", "", *notes]
    out += ["", METHOD]
    return "\n".join(out) + "\n"


def _notes(results: dict[str, dict[str, Cell]], sweeps: dict[str, Any],
           labels: dict[str, str], skipped: dict[str, str]) -> list[str]:
    every = {p.key: p.label for p in PEERS}
    notes = [f"- {every.get(k, k)}: skipped, {why}." for k, why in skipped.items()]
    grids = dict(results)
    for kind, sweep in sweeps.items():
        for x, cells in sweep.items():
            grids[f"sweep {kind}={x}"] = cells
    for name, cells in grids.items():
        for key, cell in cells.items():
            if cell.failures:
                notes.append(f"- `{name}`, {labels.get(key, key)}: {cell.describe_failure()}")
            if cell.leftovers:
                sample = ", ".join(cell.leftovers[0][:4])
                notes.append(f"- `{name}`, {labels.get(key, key)}: processes left running after "
                             f"the run in {len(cell.leftovers)} run(s), e.g. {sample}")
    return notes


METHOD = """## Method

- **Same work for all.** Every library gets the same tasks, the same number of workers (one per
  usable core; 50 threads for the I/O workload) and the platform's default start method (fork
  on Linux). Exception: joblib's loky backend always starts its workers its own way (a fresh
  interpreter, like spawn; loky warns against fork), which is how joblib users get it.
- **Each library's own idiom.** `multiprocessing.Pool`/`shoal.Pool`: `with Pool(n) as p:
  p.map(f, xs)`. Executors (stdlib and shoal): `with Executor(n) as ex: list(ex.map(f, xs,
  chunksize=c))`, with `c` from `Pool.map`'s own rule (about 4 chunks per worker), which a user
  mapping many items through an executor passes; pebble gets the same `chunksize`. joblib:
  `Parallel(n_jobs=n)(delayed(f)(x) for x in xs)`. mpire: `WorkerPool(n_jobs=n).map(f, xs)`.
  `imap` streams with each library's streaming call at its default chunk size (1 where it
  has one). Large argument: a `functools.partial` binding the array for Pool/executors/pebble,
  joblib's automatic memory-mapping, mpire's `shared_objects`. Expensive initializer:
  `initializer=` where there is one, mpire's `worker_init` with `keep_alive=True`, and for
  joblib (which has no initializer) set-up on first use in each worker. Stateful: mpire's
  `worker_state` with `worker_init`/`worker_exit`; shoal's `shoal.worker_state()` with
  `worker_exit=` and `worker_exit_results()` (`close()`, `join()` for `shoal.Pool`; the end of
  the `with` block for the executor); the stdlib's pool and executor, which have no such hook,
  use the stdlib's idiom, one manager-hosted counter per worker slot.
- **Timing.** Pool start-up and shut-down are inside the timing (joblib's reusable executor is
  shut down inside it too). Each run is one forked child of the driver, so no pool, thread or
  executor survives from one run to the next; the driver imports every library before forking
  and runs no threads. Runs are interleaved: each round runs every library once, the order
  rotating each round, so a noisy neighbour hits all libraries alike. Cells are medians.
- **Correctness.** Every run's result is checked against the serial result (outside the
  timing); a wrong result or an exception fails the cell (no time is shown), and so does a
  run past its deadline (killed with its process group; the deadline is generous).
- **Native threads.** `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`,
  `VECLIB_MAXIMUM_THREADS` and `NUMEXPR_NUM_THREADS` are set to 1 for the driver and so for
  every worker of every library.
- **CPU tasks** are a pure-Python busy loop calibrated to this machine (not sleep), so a task
  holds its core; results are checked.
- The machine is shared and noisy: read ratios, not single times; differences under ~10% are
  within the noise.
"""
