"""``shoal demo``: runs the tutorial's four scenes, says what each shows, exits 0, and is quick."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from shoal._cli import main

#: The demo should take a few seconds; this is the promise the README makes, with room to spare.
LIMIT = 30.0


def _run(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=2 * LIMIT, check=False)
    return proc, time.monotonic() - began


def _shoal_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "shoal"
    if not script.exists():
        pytest.skip(f"the shoal console script is not installed ({script})")
    return [str(script)]


def _scene_lines(out: str, number: int) -> str:
    """The text of one scene, from its header to the next."""
    parts = re.split(r"^(?=\d/4  )", out, flags=re.MULTILINE)
    scenes = [p for p in parts if re.match(r"\d/4  ", p)]
    assert len(scenes) == 4, out
    return scenes[number - 1]


def test_shoal_demo() -> None:
    proc, elapsed = _run([*_shoal_command(), "demo"])
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < LIMIT, f"the demo took {elapsed:.1f} s"
    # The default pace: a tenth of the tutorial's 3 s.
    assert "Each task sleeps 0.30 s" in out
    assert "FAILED" not in out

    one = _scene_lines(out, 1)
    assert "apply_async" in one and "non-blocking" in one
    for i in range(4):
        assert one.count(f"msg: hello {i}\n") == 1, one
        assert one.count(f"end: hello {i}\n") == 1, one
    assert "hello 3 started at" in one and "once a worker was free: two rounds" in one
    assert re.search(r"took \d+\.\d\d s \(2 x 0\.30 s of sleep", one), one

    two = _scene_lines(out, 2)
    assert "Manager" in two
    assert "the list has 100 entries" in two
    assert "shown: every task's append reached the main process's list, once" in two

    three = _scene_lines(out, 3)
    assert "blocking" in three
    assert "shown: each task started after the one before had ended" in three
    # The lines come from one worker at a time, so they alternate msg/end in task order.
    worker_lines = re.findall(r"worker \d+: (msg|end): (hello \d)", three)
    assert worker_lines == [(kind, f"hello {i}") for i in range(4) for kind in ("msg", "end")]
    assert re.search(r"took \d+\.\d\d s \(4 x 0\.30 s of sleep", three), three

    four = _scene_lines(out, 4)
    assert "get()" in four
    assert re.findall(r"main: ::: (.*)", four) == [f"done hello {i}" for i in range(3)]
    assert "shown: get() gave the values in the order the tasks were submitted" in four

    # Every scene says how long it took, and the whole run is timed too.
    assert len(re.findall(r"^ +took \d+\.\d\d s \(", out, flags=re.MULTILINE)) == 4
    assert re.search(r"^demo finished in \d+\.\d\d s$", out, flags=re.MULTILINE)


def test_python_m_shoal_demo_without_sleeps() -> None:
    proc, elapsed = _run([sys.executable, "-m", "shoal", "demo", "--time-scale", "0"])
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Each task sleeps 0.00 s" in proc.stdout
    assert "FAILED" not in proc.stdout
    assert elapsed < LIMIT


def test_demo_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--time-scale" in out and "--real-time" in out

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--real-time", "--time-scale", "0.5"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--time-scale", "-1"])
    assert exc.value.code == 2

    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
