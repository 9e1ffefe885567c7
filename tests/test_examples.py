"""Every file in examples/ runs as a script, and shows what the tutorial says it shows.

The examples stamp each line with the seconds since the script started (one clock for the main
process and the workers), so the checks read the order of events from the stamps, not from the
order lines reached the pipe. Every check is on causal order or on counts: a task that starts
after another ended, a line printed before any task ended. The only pacing assumption is that the
main process gets to run within one scaled-down sleep (0.6 s), once.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: The tutorial's tasks sleep 3 s; the examples multiply that by SHOAL_TIME_SCALE.
TUTORIAL_SLEEP = 3.0
#: Generous: the slowest example needs about 1.5 s at these scales.
CEILING = 60.0

_LINE = re.compile(r"^\[\s*(?P<t>-?\d+\.\d+)s\] (?P<text>.*)$")


class Run:
    """One example's run: its stamped lines, in stamp order."""

    def __init__(self, name: str, scale: float) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SHOAL_EXAMPLE_START"}
        env["SHOAL_TIME_SCALE"] = str(scale)
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            capture_output=True,
            text=True,
            env=env,
            cwd=EXAMPLES.parent,
            timeout=CEILING,
            check=False,
        )
        self.elapsed = time.monotonic() - began
        self.sleep = TUTORIAL_SLEEP * scale
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.returncode = proc.returncode
        self.events: list[tuple[float, str]] = []
        self.unstamped: list[str] = []
        for line in proc.stdout.splitlines():
            m = _LINE.match(line)
            if m:
                self.events.append((float(m["t"]), m["text"]))
            else:
                self.unstamped.append(line)
        self.events.sort(key=lambda e: e[0])

    def __repr__(self) -> str:
        return f"<run rc={self.returncode}\n{self.stdout}\nstderr:\n{self.stderr}>"

    def times(self, text: str) -> list[float]:
        return [t for t, what in self.events if what == text]

    def once(self, text: str) -> float:
        found = self.times(text)
        assert len(found) == 1, f"{text!r} printed {len(found)} times: {self!r}"
        return found[0]

    def spans(self, msgs: list[str]) -> dict[str, tuple[float, float]]:
        """When each task began and ended (its "msg:" and "end:" lines)."""
        return {m: (self.once(f"msg: {m}"), self.once(f"end: {m}")) for m in msgs}


HELLOS = [f"hello {i}" for i in range(4)]
MARK = "Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~"
DONE = "Sub-process(es) done."


def check_apply_async(run: Run) -> None:
    spans = run.spans(HELLOS)
    mark = run.once(MARK)
    done = run.once(DONE)
    first_three = [spans[m] for m in HELLOS[:3]]
    first_end = min(end for _, end in first_three)
    # apply_async returned at once: the main process printed while every task was still running.
    assert mark < first_end, run
    # 4 tasks, 3 workers: the fourth starts only once one of the first three has ended...
    assert spans["hello 3"][0] >= first_end, run
    # ...and never more than 3 run at once.
    for began, _ in spans.values():
        running = sum(1 for b, e in spans.values() if b <= began < e)
        assert running <= 3, run
    # Two rounds of the sleep, from the first start to the last end (sleeps never end early).
    assert max(e for _, e in spans.values()) - min(b for b, _ in spans.values()) >= 2 * run.sleep
    # join() waited for every task.
    assert done >= max(e for _, e in spans.values()), run


def check_manager_list(run: Run) -> None:
    series = sorted(
        int(what.split()[0]) for _, what in run.events if re.fullmatch(r"\d+ series", what)
    )
    assert series == list(range(100)), run
    lists = [what for _, what in run.events if what.startswith("[[")]
    assert len(lists) == 1, run
    entries = ast.literal_eval(lists[0])
    assert len(entries) == 100
    # Every task's append reached the main process's list, exactly once.
    assert sorted(entries) == [[i, i + 1] for i in range(100)]
    run.once("100 entries")
    assert run.events[-1][1] == "done", run


def check_apply_blocking(run: Run) -> None:
    spans = run.spans(HELLOS)
    mark = run.once(MARK)
    ordered = [spans[m] for m in HELLOS]
    for (_, end), (began, _) in itertools.pairwise(ordered):
        # apply waited for each task: the next began only after the one before had ended.
        assert began >= end, run
    # No two tasks overlap (the same thing, from every pair).
    for a in ordered:
        for b in ordered:
            assert a is b or a[1] <= b[0] or b[1] <= a[0], run
    # Mark only after the last task; four sleeps one after another.
    assert mark >= ordered[-1][1], run
    assert ordered[-1][1] - ordered[0][0] >= 4 * run.sleep
    assert run.once(DONE) >= mark


def check_apply_async_get(run: Run) -> None:
    hellos = HELLOS[:3]
    spans = run.spans(hellos)
    results = [(t, what) for t, what in run.events if what.startswith(":::")]
    # get() returned the values in submission order, each once.
    assert [what for _, what in results] == [f"::: done {m}" for m in hellos], run
    # The values were printed after join(), so after every task had ended.
    last_end = max(e for _, e in spans.values())
    assert all(t >= last_end for t, _ in results), run
    assert run.once(DONE) >= results[-1][0], run
    # Results are printed in the order of the lines in the file too (one process prints them).
    printed = [line.split("] ", 1)[1] for line in run.stdout.splitlines() if "::: " in line]
    assert printed == [f"::: done {m}" for m in hellos]


#: What each example must show, and the time scale to run it at.
CHECKS: dict[str, tuple[float, Callable[[Run], None]]] = {
    # 0.2: 0.6 s sleeps, the margin the main process has to print Mark before a task ends.
    "tutorial_1_apply_async.py": (0.2, check_apply_async),
    "tutorial_2_manager_list.py": (0.1, check_manager_list),
    "tutorial_3_apply_blocking.py": (0.1, check_apply_blocking),
    "tutorial_4_apply_async_get.py": (0.1, check_apply_async_get),
}

ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_the_tutorial_examples_are_there() -> None:
    assert set(CHECKS) <= set(ALL_EXAMPLES)


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_example_runs(name: str) -> None:
    scale, check = CHECKS.get(name, (0.1, None))
    run = Run(name, scale)
    assert run.returncode == 0, run
    assert "Traceback" not in run.stderr, run
    assert run.events, run
    assert run.unstamped == [], run
    assert run.elapsed < CEILING
    if check is not None:
        check(run)
    else:  # a new example: it must at least be a script with the __main__ guard
        assert 'if __name__ == "__main__":' in (EXAMPLES / name).read_text()


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_has_main_guard_and_time_scale(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    tree = ast.parse(source)
    guards = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
    ]
    assert len(guards) == 1, "the pool must be made under the __main__ guard (spawn re-imports)"
    # Nothing but definitions and constants outside the guard: no pool at import time.
    for node in tree.body:
        if node is guards[0]:
            continue
        assert isinstance(
            node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.Assign | ast.Expr
        ), ast.unparse(node)
    # Sleeps go through the time scale.
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "time.sleep":
            assert "TIME_SCALE" in ast.unparse(node.args[0]), ast.unparse(node)
