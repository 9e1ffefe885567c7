"""``__main__`` functions, classes and lambdas, run as real scripts (``python script.py METHOD``).

A test module is never ``__main__``, so these run the scripts under ``scripts/`` as subprocesses,
once per start method, and check each line they print.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).with_name("scripts")
METHODS = ["fork", "spawn", "forkserver"]
#: A liveness ceiling for a whole script.
SCRIPT_CEILING = 90

FACADES = ["pool", "executor", "map"]
CHECKS = [
    f"{facade}-{what}"
    for facade in FACADES
    for what in (
        "dataclass",
        "late-dataclass",
        "main-exception",
        "late-exception",
        "lambda",
        "closure",
    )
] + ["pool-initializer-global", "executor-initializer-global"]

_outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]] = {}


def run_script(name: str, method: str) -> subprocess.CompletedProcess[str]:
    key = (name, method)
    if key not in _outputs:
        _outputs[key] = subprocess.run(
            [sys.executable, str(SCRIPTS / name), method],
            capture_output=True,
            text=True,
            timeout=SCRIPT_CEILING,
            cwd=SCRIPTS,
        )
    return _outputs[key]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("check", CHECKS)
def test_main_objects(method: str, check: str) -> None:
    """A ``__main__`` dataclass returned by a task is the parent's class; a ``__main__`` exception
    raised by a task is caught as the parent's class; an initializer's global is seen by later
    tasks; lambdas and closures work. ``late`` ones were defined after the pool started."""
    proc = run_script("main_objects.py", method)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f"CHECK {check} ")]
    assert lines, f"no result for {check}:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert lines == [f"CHECK {check} ok"], proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "DONE" in proc.stdout


@pytest.mark.parametrize(
    "method",
    [
        "fork",
        "spawn",
        "forkserver",
    ],
)
def test_unguarded_script_is_not_rerun(method: str) -> None:
    proc = run_script("unguarded.py", method)
    ran = [line for line in proc.stdout.splitlines() if line.startswith("SCRIPT-RAN")]
    assert len(ran) == 1, f"the script ran {len(ran)} times:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "POOL [0, 1, 4, 9, 16]" in proc.stdout, proc.stderr[-3000:]
    assert "EXECUTOR [0, 1, 4, 9, 16]" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_guarded_script_spawn_imports_are_harmless() -> None:
    """Under spawn the guarded script may be imported by workers (as ``__mp_main__``) but its
    guarded block runs once: every check above printed exactly one line."""
    proc = run_script("main_objects.py", "spawn")
    for check in CHECKS:
        assert sum(line.startswith(f"CHECK {check} ") for line in proc.stdout.splitlines()) == 1
    mains = [line for line in proc.stdout.splitlines() if line.endswith(" __main__")]
    assert len(mains) == 1
