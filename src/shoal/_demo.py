"""``shoal demo``: the multiprocessing tutorial, live, one scene per concept.

Each scene prints a short explanation and the call it makes, runs it on real pools with a
timeline attached (``trace=``), prints what the main program saw, the text Gantt chart of what
ran where and when, and what that showed. The tutorial's tasks sleep 3 s; the demo scales that
(``--time-scale``, default 0.1) so the whole tour takes a few seconds; ``--real-time`` keeps the
tutorial's pace. ``--scene NAME`` runs some scenes only, ``--html FILE`` writes a page with every
timeline, ``--trace FILE`` Chrome traces (https://ui.perfetto.dev).

Uses the public API only (``import shoal``, and ``shoal.observe`` for the exports); the scenes
are in ``_demo_scenes``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import shoal
from shoal._demo_scenes import SCENES, Scene, SceneInfo
from shoal.observe import Timeline, write_html

__all__ = ["DEFAULT_TIME_SCALE", "TUTORIAL_SLEEP", "run_demo"]

#: The tutorial's tasks sleep this long.
TUTORIAL_SLEEP = 3.0
#: The demo's default: a tenth of the tutorial's sleeps (0.3 s).
DEFAULT_TIME_SCALE = 0.1

_INDENT = "     "
_WIDTH = 96
NAMES = [s.name for s in SCENES]


def _text(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _wrap(text: str, first: str = _INDENT, rest: str = _INDENT + "  ") -> None:
    _text(textwrap.fill(text, width=_WIDTH, initial_indent=first, subsequent_indent=rest))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal demo",
        description="The multiprocessing tutorial, live on shoal: one scene per concept, each "
        "with a short explanation and a timeline of what ran where and when.",
        epilog="scenes: " + ", ".join(NAMES),
    )
    parser.add_argument(
        "--scene",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help="run this scene (repeat for several; default: all): " + ", ".join(NAMES),
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        metavar="X",
        help=f"multiply the tutorial's {TUTORIAL_SLEEP:g} s sleeps by X "
        f"(default {DEFAULT_TIME_SCALE:g}: the tour takes a few seconds)",
    )
    pace.add_argument(
        "--real-time",
        action="store_true",
        help=f"sleep {TUTORIAL_SLEEP:g} s per task, as the tutorial does (about a minute in all)",
    )
    parser.add_argument(
        "--html", metavar="FILE", help="write a self-contained HTML page with every timeline"
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write the timeline as a Chrome trace (open it in https://ui.perfetto.dev); with "
        "several timelines, FILE-<scene>-<n>.json each",
    )
    parser.add_argument(
        "--width", type=int, default=0, metavar="N", help="width of the text Gantt charts"
    )
    return parser


def _gantt_width(asked: int) -> int:
    if asked > 0:
        return asked
    columns = shutil.get_terminal_size((_WIDTH, 24)).columns
    return max(60, min(_WIDTH, columns)) - len(_INDENT)


def _run_scene(info: SceneInfo, number: int, total: int, sleep: float, width: int) -> Scene:
    _text()
    _text(f"{number}/{total}  {info.title}  [{info.name}]")
    for line in info.explanation.splitlines():
        _text(_INDENT + line)
    _text(f"{_INDENT}runs: {info.code}")
    began = time.monotonic()

    def say(text: str) -> None:
        # One write per line: the callback thread says things too.
        sys.stdout.write(f"{_INDENT}[{time.monotonic() - began:6.2f}s] {text}\n")
        sys.stdout.flush()

    scene = Scene(sleep, say)
    try:
        info.run(scene)
    except Exception as exc:  # noqa: BLE001 - reported as the scene's outcome: a FAILED check
        scene.claim(False, "", f"the scene raised {type(exc).__name__}: {exc}")
    took = time.monotonic() - began
    for label, timeline in scene.timelines:
        _text()
        if label:
            _text(f"{_INDENT}{label}:")
        for line in timeline.text_gantt(width=width).splitlines():
            _text(_INDENT + line)
    _text()
    for held, hard, what in scene.checks:
        verdict = "shown:" if held else ("FAILED:" if hard else "not this time:")
        _wrap(f"{verdict} {what}")
    _text(f"{_INDENT}took {took:.2f} s")
    return scene


def _trace_paths(base: str, scenes: list[tuple[SceneInfo, Scene]]) -> list[tuple[Path, Timeline]]:
    every = [(info, t) for info, scene in scenes for _label, t in scene.timelines]
    if len(every) == 1:
        return [(Path(base), every[0][1])]
    path = Path(base)
    out = []
    counts: dict[str, int] = {}
    for info, timeline in every:
        counts[info.name] = counts.get(info.name, 0) + 1
        name = f"{path.stem}-{info.name}-{counts[info.name]}{path.suffix or '.json'}"
        out.append((path.with_name(name), timeline))
    return out


def run_demo(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0: every scene showed what it should).

    Args:
        argv: the arguments after ``demo`` (None: none).
    """
    parser = _parser()
    args = parser.parse_args(list(argv) if argv is not None else [])
    scale = 1.0 if args.real_time else args.time_scale
    if not scale >= 0:  # also refuses NaN
        parser.error(f"--time-scale must be 0 or more, not {scale}")
    chosen = [s for s in SCENES if not args.scene or s.name in args.scene]
    sleep = TUTORIAL_SLEEP * scale
    width = _gantt_width(args.width)
    _text(f"shoal {shoal.__version__} demo: the multiprocessing tutorial, one scene per concept")
    _wrap(
        f"Tasks sleep {sleep:.2f} s (the tutorial's {TUTORIAL_SLEEP:g} s x {scale:g}"
        + ("" if args.real_time else "; --real-time for the tutorial's pace")
        + f"). Workers start with {multiprocessing.get_start_method()}; "
        f"{shoal.cpu_count()} CPU(s).",
        first="",
        rest="",
    )
    _wrap(
        "In the charts each task is drawn with its own character (0, 1, 2, ... in the order "
        "they were submitted), ! a failed one; ~ is the main program's time in a call or at "
        "work, * a moment it marked.",
        first="",
        rest="",
    )
    total = time.monotonic()
    done: list[tuple[SceneInfo, Scene]] = []
    try:
        for number, info in enumerate(chosen, 1):
            done.append((info, _run_scene(info, number, len(chosen), sleep, width)))
    except BrokenPipeError:
        # The reader went away (``shoal demo | head``): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    _text()
    _text(f"demo finished in {time.monotonic() - total:.2f} s")
    if args.html:
        sections = [
            (f"{info.name}: {info.title}" + (f" ({label})" if label else ""), timeline)
            for info, scene in done
            for label, timeline in scene.timelines
        ]
        write_html(args.html, sections, title="shoal demo: the multiprocessing tutorial, live")
        _text(f"timelines written to {args.html}")
    if args.trace:
        for path, timeline in _trace_paths(args.trace, done):
            timeline.to_chrome_trace(path)
            _text(f"trace written to {path}")
    failed = sum(1 for _i, s in done for held, hard, _w in s.checks if hard and not held)
    if failed:
        _text(f"{failed} check(s) FAILED: shoal did not behave as it should")
        return 1
    return 0
