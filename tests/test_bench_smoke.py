"""The benchmark suite (``python -m bench``) runs, and checks what it times.

Only the stdlib's pools and shoal take part (joblib, mpire and pebble may be absent here), at
the smallest sizes. Nothing here asserts a speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def test_quick_run_times_and_checks_stdlib_and_shoal() -> None:
    proc = _run(["-m", "bench", "--quick", "--only", "fixed_cost", "tiny", "--repeat", "1",
                 "--libs", "stdlib", "shoal"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("multiprocessing.Pool", "ProcessPoolExecutor", "shoal.Pool",
                  "shoal.ProcessPoolExecutor"):
        assert label in out
    assert "`fixed_cost`" in out and "`tiny`" in out
    assert "FAILED" not in out and "TIMEOUT" not in out
    assert "Every run's result is checked" in out


def test_a_wrong_result_fails_the_cell_and_a_hang_times_out() -> None:
    # A peer that returns wrong results, and one that hangs, against the real runner (in a
    # child interpreter: the runner forks, which a threaded pytest process should not).
    code = r"""
import time
from bench.peers import Peer
from bench.runner import run_grid
from bench.workloads import tiny_workload

class Wrong(Peer):
    key, label = "wrong", "wrong"
    def map(self, fn, items, workers):
        return [fn(x) + 1 for x in items]

class Hangs(Peer):
    key, label = "hangs", "hangs"
    def map(self, fn, items, workers):
        time.sleep(60)

w = tiny_workload(10)
w.timeout = 2
cells = run_grid([w], [Wrong(), Hangs()], repeat=2, log=lambda m: None)["tiny"]
wrong, hangs = cells["wrong"], cells["hangs"]
assert wrong.median is None and len(wrong.failures) == 2, wrong
assert wrong.failures[0]["status"] == "error", wrong.failures
assert "wrong result" in wrong.failures[0]["error"], wrong.failures
assert hangs.median is None and [f["status"] for f in hangs.failures] == ["timeout"], hangs
assert "in map" in hangs.failures[0]["stacks"], hangs.failures[0]["stacks"]
print("ok")
"""
    proc = _run(["-c", code], timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_ceiling_runs_every_way_and_checks_results() -> None:
    proc = _run(["-m", "bench.ceiling", "--repeat", "1"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ("serial=", "bare forked split=", "multiprocessing.Pool=", "shoal.Pool="):
        assert proc.stdout.count(label) == 2, proc.stdout  # the 1 ms and the 5 ms workload


def test_the_sweep_fit_recovers_a_straight_line_and_flags_a_bent_one() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.report import line_fit, linearity
        from bench.runner import Cell
    finally:
        sys.path.remove(str(ROOT))

    def sweep(cost: object) -> dict[int, dict[str, Cell]]:
        counts = [1_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
        return {n: {"lib": Cell(times=[cost(n)] * 3)} for n in counts}  # type: ignore[operator]

    straight = sweep(lambda n: 0.010 + 0.2e-6 * n)  # 10 ms + 0.2 µs per task
    fit = line_fit(straight, "lib")
    assert fit is not None
    assert abs(fit[0] - 0.010) < 1e-9 and abs(fit[1] - 0.2e-6) < 1e-12
    text = linearity(straight, "lib")
    assert text is not None and "within ±0% of the slope" in text

    bent = sweep(lambda n: 0.010 + 0.2e-6 * n + 1e-13 * n * n)  # grows faster than linearly
    text = linearity(bent, "lib")
    assert text is not None and "within ±0% of the slope" not in text
    assert line_fit({}, "lib") is None


def test_startup_breakdown_times_every_way_and_checks_results() -> None:
    proc = _run(["-m", "bench.startup", "--repeat", "1"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and " ms |" in line]
    labels = [row.split("|")[1].strip() for row in rows]
    assert labels == [
        "bare two-fork prototype", "bare prototype with a zygote", "multiprocessing.Pool",
        "shoal.Pool",
        "multiprocessing.Pool, `with` block (terminate)", "shoal.Pool, `with` block (terminate)",
        "ProcessPoolExecutor", "shoal.ProcessPoolExecutor",
    ], proc.stdout
    for row in rows:  # constructor <= results <= closed: the phases are from the start
        made, got, done = (float(cell.strip().split()[0]) for cell in row.split("|")[2:5])
        assert made <= got <= done, row
    ratios = {label: float(row.split("|")[5].strip().rstrip("x")) for label, row in
              zip(labels, rows, strict=True)}
    # Each way against the fastest of the stdlib's three: that one is 1.00x, none is below.
    stdlib = ["multiprocessing.Pool", "multiprocessing.Pool, `with` block (terminate)",
              "ProcessPoolExecutor"]
    assert min(ratios[k] for k in stdlib) == 1.0, ratios
