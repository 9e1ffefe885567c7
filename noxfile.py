"""Test sessions. ``python3 -m nox`` runs the default selection (what CI runs):

* ``tests-3.11``: the project's suite, plus CPython's multiprocessing Pool tests against shoal
  (fork and spawn, each in its own interpreter); slow tests excluded.
* ``futures-3.13``: CPython 3.13's ``test.test_concurrent_futures`` package against shoal's
  executors (the package exists only on 3.13).

Others: ``python3 -m nox -s tests-3.12``, ``python3 -m nox -s slow`` (soak, and the stdlib
multiprocessing suite under forkserver: with the default sessions, the stdlib suites then ran
on every start method), ``python3 -m nox -s lint``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests-3.11", "futures-3.13"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _expose_pyenv_versions() -> None:
    """pyenv shims answer only for the global version; let nox find 3.11, 3.12 and 3.13."""
    # The pyenv shim that runs nox itself sets PYENV_VERSION to its own version: add ours.
    if shutil.which("pyenv") is None:
        return
    out = subprocess.run(
        ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
    ).stdout.split()
    wanted = []
    for minor in ("3.11", "3.12", "3.13"):
        matches = [v for v in out if v.startswith(minor + ".") and v.replace(".", "").isdigit()]
        if matches:
            wanted.append(sorted(matches, key=lambda v: [int(p) for p in v.split(".")])[-1])
    current = [v for v in os.environ.get("PYENV_VERSION", "").split(":") if v]
    merged = current + [v for v in wanted if v not in current]
    if merged:
        os.environ["PYENV_VERSION"] = ":".join(merged)


_expose_pyenv_versions()


def _install(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    # tests/observe renders timelines in headless Chromium, and fails (not skips) without it.
    debian_root = os.path.exists("/etc/debian_version") and os.geteuid() == 0
    if not os.path.exists("/usr/bin/chromium") and debian_root:
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "chromium", external=True)
    # Points the stdlib's Pool and executors at shoal inside CPython's test suites (and their
    # isolated subprocesses), only when SHOAL_STDLIB_SWITCH is set; see tests/stdlib/.
    session.run("python", "tests/stdlib/install_switch.py", silent=True)


@nox.session(python=["3.11", "3.12"])
def tests(session: nox.Session) -> None:
    """The suite, without the slow tests."""
    _install(session)
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session(python="3.13")
def futures(session: nox.Session) -> None:
    """CPython 3.13's concurrent.futures tests against shoal's executors."""
    _install(session)
    session.run("python", "-m", "pytest", "tests/stdlib", "-m", "futures and not slow", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """Everything marked slow: soak, and the stdlib multiprocessing suite under forkserver."""
    _install(session)
    session.run("python", "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict on src/)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests")
    session.run("mypy")
