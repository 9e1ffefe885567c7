"""``shoal demo``: the multiprocessing tutorial's four examples, run on :class:`shoal.Pool`.

Each scene prints what it is about, runs, prints its timeline as the workers report it, then
what the timeline shows and how long the scene took. The tutorial's tasks sleep 3 s; the demo
scales that down (``--time-scale``, default 0.1) so the whole run takes a few seconds;
``--real-time`` keeps the tutorial's pace.

Uses the public API only (``import shoal``), like any program written against shoal. The task
functions live in this importable module, so workers receive them by reference under every start
method.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from multiprocessing import Manager
from typing import Any, NamedTuple

import shoal

__all__ = ["DEFAULT_TIME_SCALE", "TUTORIAL_SLEEP", "run_demo"]

#: The tutorial's tasks sleep this long.
TUTORIAL_SLEEP = 3.0
#: The demo's default: a tenth of the tutorial's sleeps (0.3 s), a few seconds in all.
DEFAULT_TIME_SCALE = 0.1

_INDENT = "     "
_WIDTH = 96


def _say(start: float, text: str) -> None:
    """One line, stamped with the seconds since ``start``, in a single write (workers print
    too, and their lines must not run into each other)."""
    sys.stdout.write(f"{_INDENT}[{time.monotonic() - start:6.2f}s] {text}\n")
    sys.stdout.flush()


def _text(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Span(NamedTuple):
    """When one task ran, in seconds since its scene began, and where."""

    msg: str
    pid: int
    began: float
    ended: float


def _task(msg: str, start: float, sleep: float) -> Span:
    """The tutorial's ``func``: announce, sleep, announce the end (and say when, for the demo)."""
    pid = os.getpid()
    began = time.monotonic()
    _say(start, f"worker {pid}: msg: {msg}")
    time.sleep(sleep)
    ended = time.monotonic()
    _say(start, f"worker {pid}: end: {msg}")
    return Span(msg, pid, began - start, ended - start)


def _task_with_value(msg: str, start: float, sleep: float) -> str:
    """The tutorial's last ``func``, which returns a value for ``get()``."""
    _task(msg, start, sleep)
    return "done " + msg


def _append(i: int, shared: Any) -> None:
    """The tutorial's shared-list task: append ``[i, i + 1]`` through the Manager's proxy."""
    shared.append([i, i + 1])


class _Scene:
    """What each scene reports back: the checks it made, each as (held, what it shows)."""

    def __init__(self) -> None:
        self.checks: list[tuple[bool, bool, str]] = []

    def claim(self, held: bool, shown: str, missed: str, *, timing: bool = False) -> None:
        """Record a check. ``timing`` claims depend on the machine's pace (a busy machine can
        delay the main process by more than a scaled-down sleep); the others shoal guarantees."""
        self.checks.append((held, timing, shown if held else missed))


def _scene_apply_async(scene: _Scene, sleep: float) -> None:
    start = time.monotonic()
    pool = shoal.Pool(processes=3)
    results = [pool.apply_async(_task, (f"hello {i}", start, sleep)) for i in range(4)]
    mark = time.monotonic() - start
    _say(start, "main: Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~")
    pool.close()
    pool.join()
    _say(start, "main: Sub-process(es) done.")
    spans = [r.get(timeout=0) for r in results]
    first_end = min(s.ended for s in spans[:3])
    scene.claim(
        mark < first_end,
        f"the main process printed Mark at {mark:.2f} s, before the first task ended "
        f"({first_end:.2f} s): apply_async did not wait",
        f"Mark came at {mark:.2f} s, after the first task ended ({first_end:.2f} s); the machine "
        "is busy, try a larger --time-scale",
        timing=True,
    )
    scene.claim(
        spans[3].began >= first_end,
        f"hello 3 started at {spans[3].began:.2f} s, once a worker was free: two rounds",
        f"hello 3 started at {spans[3].began:.2f} s, before any of the first three ended",
    )
    pids = {s.pid for s in spans}
    scene.claim(
        len(pids) <= 3,
        f"{len(pids)} worker processes ran the 4 tasks",
        f"{len(pids)} worker processes ran the 4 tasks of a 3-worker pool",
    )


def _scene_manager_list(scene: _Scene, sleep: float) -> None:
    start = time.monotonic()
    with Manager() as manager:
        shared: Any = manager.list([])
        pool = shoal.Pool(processes=4)
        for i in range(100):
            pool.apply_async(_append, (i, shared))
        _say(start, "main: submitted 100 tasks, each appends [i, i + 1] to the shared list")
        pool.close()
        pool.join()
        entries = list(shared)
    _say(start, f"main: the list has {len(entries)} entries, first {entries[:4]}")
    scene.claim(
        sorted(entries) == [[i, i + 1] for i in range(100)],
        "every task's append reached the main process's list, once",
        f"the list holds {len(entries)} entries, not the 100 the tasks appended",
    )


def _scene_apply_blocking(scene: _Scene, sleep: float) -> None:
    start = time.monotonic()
    pool = shoal.Pool(processes=3)
    spans = [pool.apply(_task, (f"hello {i}", start, sleep)) for i in range(4)]
    _say(start, "main: Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~")
    pool.close()
    pool.join()
    _say(start, "main: Sub-process(es) done.")
    in_turn = all(b.began >= a.ended for a, b in itertools.pairwise(spans))
    scene.claim(
        in_turn,
        "each task started after the one before had ended, although 3 workers were there",
        "two tasks overlapped: apply did not wait for its result",
    )


def _scene_apply_async_get(scene: _Scene, sleep: float) -> None:
    start = time.monotonic()
    pool = shoal.Pool(processes=4)
    results = [pool.apply_async(_task_with_value, (f"hello {i}", start, sleep)) for i in range(3)]
    pool.close()
    pool.join()
    joined = time.monotonic()
    values = []
    for res in results:
        values.append(res.get())
        _say(start, f"main: ::: {values[-1]}")
    waited = time.monotonic() - joined
    _say(start, "main: Sub-process(es) done.")
    scene.claim(
        values == [f"done hello {i}" for i in range(3)],
        "get() gave the values in the order the tasks were submitted",
        f"get() gave {values}, not in submission order",
    )
    scene.claim(
        waited < sleep,
        f"after join() every result was ready: the three get() calls took {waited:.3f} s",
        f"the get() calls after join() waited {waited:.2f} s",
        timing=True,
    )


class _Plan(NamedTuple):
    title: str
    explanation: str
    rounds: int
    run: Callable[[_Scene, float], None]


_PLANS = [
    _Plan(
        "apply_async: hand the tasks over and carry on (Pool(processes=3), 4 tasks)",
        "apply_async returns at once: the call is asynchronous (the result is announced later)\n"
        "and non-blocking (the caller keeps working), like starting a download with a tool that\n"
        "rings when it is done and doing something else meanwhile. Three workers take three\n"
        "tasks; the fourth waits for a free worker, so the work takes two rounds.",
        2,
        _scene_apply_async,
    ),
    _Plan(
        "a list shared through a Manager (Pool(processes=4), 100 tasks)",
        "Workers are separate processes: a plain list passed to a task is a copy, and appends\n"
        "to it are lost. A multiprocessing.Manager keeps one list in its own process and gives\n"
        "each task a proxy to it, so after join() the main process sees every append.",
        0,
        _scene_manager_list,
    ),
    _Plan(
        "apply: blocking, one task at a time (Pool(processes=3), 4 tasks)",
        "apply sends a task and waits for its result before it returns: synchronous and\n"
        "blocking, like watching a progress bar until it reaches 100%. The four tasks run one\n"
        "after another, and Mark comes only after the last one.",
        4,
        _scene_apply_blocking,
    ),
    _Plan(
        "apply_async, then get() after join() (Pool(processes=4), 3 tasks)",
        "Each apply_async returns an AsyncResult at once and the three tasks run side by side.\n"
        "close() and join() wait for them all; then each get() hands back its task's value\n"
        "without waiting, in the order the tasks were submitted.",
        1,
        _scene_apply_async_get,
    ),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal demo",
        description="Run the multiprocessing tutorial's four examples on shoal.Pool, each with "
        "a short explanation of what it shows and how long it took.",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        metavar="X",
        help=f"multiply the tutorial's {TUTORIAL_SLEEP:g} s sleeps by X "
        f"(default {DEFAULT_TIME_SCALE:g}: a few seconds in all)",
    )
    pace.add_argument(
        "--real-time",
        action="store_true",
        help=f"sleep {TUTORIAL_SLEEP:g} s per task, as the tutorial does (about 20 s in all)",
    )
    return parser


def run_demo(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0: every scene ran and showed what it should).

    Args:
        argv: the arguments after ``demo`` (None: none).
    """
    args = _parser().parse_args(list(argv) if argv is not None else [])
    scale = 1.0 if args.real_time else args.time_scale
    if not scale >= 0:  # also refuses NaN
        _parser().error(f"--time-scale must be 0 or more, not {scale}")
    sleep = TUTORIAL_SLEEP * scale
    _text(
        f"shoal {shoal.__version__} demo: the four examples of the multiprocessing tutorial, "
        "on shoal.Pool"
    )
    _text(
        f"Each task sleeps {sleep:.2f} s (the tutorial's {TUTORIAL_SLEEP:g} s x {scale:g}"
        + ("" if args.real_time else "; --real-time for the tutorial's pace")
        + f"). Workers start with {multiprocessing.get_start_method()}."
    )
    failed_hard = 0
    total = time.monotonic()
    for number, plan in enumerate(_PLANS, 1):
        _text("")
        _text(f"{number}/{len(_PLANS)}  {plan.title}")
        for line in plan.explanation.splitlines():
            _text(_INDENT + line)
        scene = _Scene()
        began = time.monotonic()
        try:
            plan.run(scene, sleep)
        except Exception as exc:  # reported as the scene's outcome, a FAILED check
            scene.claim(False, "", f"the scene raised {type(exc).__name__}: {exc}")
        took = time.monotonic() - began
        for held, timing, what in scene.checks:
            if held:
                verdict = "shown:"
            elif timing:
                verdict = "not this time:"
            else:
                verdict = "FAILED:"
                failed_hard += 1
            _text(
                textwrap.fill(
                    f"{verdict} {what}",
                    width=_WIDTH,
                    initial_indent=_INDENT,
                    subsequent_indent=_INDENT + "  ",
                )
            )
        if plan.rounds:
            pace = (
                f"{plan.rounds} x {sleep:.2f} s of sleep; at the tutorial's pace about "
                f"{plan.rounds * TUTORIAL_SLEEP:g} s"
            )
        else:
            pace = "no sleeps: starting the Manager and the pool is most of it"
        _text(f"{_INDENT}took {took:.2f} s ({pace})")
    _text("")
    _text(f"demo finished in {time.monotonic() - total:.2f} s")
    if failed_hard:
        _text(f"{failed_hard} check(s) FAILED: shoal did not behave as multiprocessing.Pool does")
        return 1
    return 0
