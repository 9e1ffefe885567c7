"""``python -m bench``: time shoal against its peers. See ``--help`` and docs/benchmarks.md."""

from __future__ import annotations

# Before anything loads numpy or a BLAS: one native thread per process, for every library.
from bench.env import limit_native_threads

limit_native_threads()

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench import report, runner, saved  # noqa: E402
from bench.calibrate import steps_per_ms  # noqa: E402
from bench.env import load_average, machine_info, preload_shoal, usable_cores  # noqa: E402
from bench.peers import GROUPS, PEERS, Peer, select_peers  # noqa: E402
from bench.workloads import WORKLOADS, build_workloads  # noqa: E402

SWEEPS = ["sweep_tasks", "sweep_workers"]

Results = dict[str, dict[str, runner.Cell]]
Sweeps = dict[str, dict[int, dict[str, runner.Cell]]]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time shoal against multiprocessing, concurrent.futures, joblib, mpire and "
        "pebble. Runs are interleaved across libraries and repeated; cells are medians; every "
        "result is checked.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 3 rounds: about 2 minutes")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="rounds per workload (default: 5, or 3 with --quick)")
    parser.add_argument("--only", nargs="+", metavar="WORKLOAD", choices=WORKLOADS + SWEEPS,
                        help=f"run only these: {', '.join(WORKLOADS + SWEEPS)}")
    parser.add_argument("--libs", nargs="+", metavar="LIB",
                        help="only these libraries (serial always runs): keys "
                        f"{', '.join(p.key for p in PEERS)} or groups {', '.join(GROUPS)}")
    parser.add_argument("--write-docs", action="store_true",
                        help="write docs/benchmarks.md and docs/benchmarks.png")
    parser.add_argument("--docs-dir", default="docs", help="where --write-docs writes (docs)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, metavar="X",
                        help="multiply every per-run deadline by X")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: redraw the tables (and with --write-docs the docs) "
                        "from a saved docs/benchmarks.json")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _usable(peers: list[Peer]) -> tuple[list[Peer], dict[str, str]]:
    usable, skipped = [], {}
    for peer in peers:
        why = peer.available()  # imports it here, so that every run's child starts with it
        if why is None:
            usable.append(peer)
        else:
            skipped[peer.key] = why
            print(f"note: {peer.label} skipped: {why}", file=sys.stderr)
    return usable, skipped


def _missing_modules(modules: list[str]) -> set[str]:
    missing = set()
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.add(name)
    return missing


def _sweep_peers(peers: list[Peer], results: dict[str, dict[str, runner.Cell]]) -> list[Peer]:
    """shoal's process variants and the three other libraries fastest on ``tiny``."""
    process = [p for p in peers if p.kind == "process"]
    others = [p for p in process if not p.is_shoal]
    tiny = results.get("tiny")
    if tiny:
        timed = [(tiny[p.key].median, i, p) for i, p in enumerate(others)
                 if p.key in tiny and tiny[p.key].median is not None]
        fastest = {p.key for _, _, p in sorted(timed)[:3]}
    else:
        fastest = {"mp", "cf", "mpire"}
    return [p for p in process if p.is_shoal or p.key in fastest]


def _command(argv: list[str]) -> str:
    """The command as run, with PYTHONPATH when it points shoal at another checkout."""
    prefix = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return (prefix + "python -m bench " + shlex.join(argv)).strip()


def _measure(args: argparse.Namespace, argv: list[str]) -> tuple[dict[str, Any], Results, Sweeps]:
    wall0 = time.perf_counter()
    peers, skipped = _usable(select_peers(args.libs))
    preload_shoal()
    missing = _missing_modules(["numpy"])  # loaded once here, not in every run's child
    if threading.active_count() != 1:
        print(f"warning: {threading.active_count()} threads in the driver after imports; "
              "forking from it may be unsafe", file=sys.stderr)
    info = machine_info()
    load_before = load_average()
    rate = steps_per_ms()
    workloads = build_workloads(args.quick, rate)
    selected = args.only or WORKLOADS + SWEEPS
    names = []
    for name in WORKLOADS:
        if name not in selected:
            continue
        lacking = [m for m in workloads[name].needs if m in missing]
        if lacking:
            print(f"note: workload {name} skipped: needs {', '.join(lacking)}", file=sys.stderr)
            skipped[f"workload {name}"] = f"needs {', '.join(lacking)}"
        else:
            names.append(name)
    print(f"shoal bench: {'quick' if args.quick else 'full'} run, {args.repeat} rounds, "
          f"{usable_cores()} cores, busy loop {rate:,.0f} steps/ms; workloads: "
          f"{', '.join(names + [s for s in SWEEPS if s in selected])}", file=sys.stderr)

    results = runner.run_grid([workloads[n] for n in names], peers, args.repeat,
                              args.timeout_scale, verbose=args.verbose)
    sweeps: Sweeps = {}
    sweep_peers = _sweep_peers(peers, results)
    if "sweep_tasks" in selected and sweep_peers:
        # Two points a decade from 10^4 up: enough to see whether the cost is a straight line.
        counts = ([10**3, 10**4, 10**5] if args.quick
                  else [10**3, 10**4, 3 * 10**4, 10**5, 3 * 10**5, 10**6])
        sweeps["tasks"] = runner.sweep_tasks(counts, sweep_peers, args.repeat,
                                             timeout_scale=args.timeout_scale)
    if "sweep_workers" in selected and sweep_peers:
        serial = [p for p in peers if p.kind == "serial"]
        sweeps["workers"] = runner.sweep_workers(
            list(range(1, usable_cores() + 1)), serial + sweep_peers, args.repeat, rate,
            100 if args.quick else 200, timeout_scale=args.timeout_scale)

    wall = time.perf_counter() - wall0
    info["load average"] = (f"{load_before} at the start, {load_average()} at the end "
                            f"(1-minute; {usable_cores()} cores)")
    meta = {"info": info, "command": _command(argv), "wall": wall, "repeat": args.repeat,
            "quick": args.quick, "steps_per_ms": rate, "skipped": skipped}
    return meta, results, sweeps


def _output(args: argparse.Namespace, meta: dict[str, Any], results: Results,
            sweeps: Sweeps) -> None:
    used: set[str] = set()
    for cells in results.values():
        used.update(cells)
    for sweep in sweeps.values():
        for cells in sweep.values():
            used.update(cells)
    peers = [p for p in PEERS if p.key in used]
    workloads = build_workloads(meta["quick"], meta["steps_per_ms"])
    chart_name = "benchmarks.png"
    text = report.render(
        info=meta["info"], command=meta["command"], wall=meta["wall"], workloads=workloads,
        results=results, sweeps=sweeps, peers=peers, skipped=meta["skipped"],
        repeat=meta["repeat"], quick=meta["quick"], steps_per_ms=meta["steps_per_ms"],
        chart=chart_name if args.write_docs else None,
    )
    print(text)
    if not args.write_docs:
        return
    os.makedirs(args.docs_dir, exist_ok=True)
    md = os.path.join(args.docs_dir, "benchmarks.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write(text)
    raw = os.path.join(args.docs_dir, "benchmarks.json")
    if not args.from_json or os.path.abspath(args.from_json) != os.path.abspath(raw):
        saved.dump(raw, meta, results, sweeps)
    from bench.chart import draw

    info = meta["info"]
    try:
        draw(os.path.join(args.docs_dir, chart_name), report.summarize(workloads, results, peers),
             sweeps, peers,
             f"shoal benchmarks, {info['cpu']}, {info['cores']}, {info['python']}, "
             f"{'quick' if meta['quick'] else 'full'} run, medians of {meta['repeat']}")
    except ImportError as exc:
        print(f"note: no chart ({exc}); pip install -e '.[bench]'", file=sys.stderr)
        chart_name = "(no chart)"
    print(f"wrote {md}, {raw} and {os.path.join(args.docs_dir, chart_name)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.from_json:
        meta, results, sweeps = saved.load(args.from_json)
    else:
        meta, results, sweeps = _measure(args, argv)
    _output(args, meta, results, sweeps)
    print(f"done in {meta['wall']:.0f} s", file=sys.stderr)
    failed = any(c.failures for cells in results.values() for c in cells.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
