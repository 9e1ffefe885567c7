"""The guide (docs/guide): every page's example runs, draws its timeline, and prints what the
page says it shows; the code on the pages is the examples' code; the pictures are there."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide"
EXAMPLES = ROOT / "examples" / "guide"
#: The tutorial's 3 s sleeps x this: quick, and still long next to a pool's own latency.
SCALE = 0.05
CEILING = 120.0
PNG = b"\x89PNG\r\n\x1a\n"

#: page -> example
PAGES = {
    "01-parallelism.md": "parallelism.py",
    "02-sync-blocking.md": "sync_blocking.py",
    "03-sync-nonblocking.md": "sync_nonblocking.py",
    "04-async-blocking.md": "async_blocking.py",
    "05-async-nonblocking.md": "async_nonblocking.py",
    "06-daemon.md": "daemon.py",
    "07-shared-memory.md": "shared_memory.py",
    "08-ipc.md": "ipc.py",
}


def _rows(out: str) -> dict[str, str]:
    """The rows of the text Gantt charts an example printed: name -> bar (later charts win)."""
    return {
        m[1].strip(): m[2]
        for m in re.finditer(r"^(\S.{0,27}?) +\|([^|\n]*)\|$", out, flags=re.MULTILINE)
    }


def check_parallelism(out: str) -> None:
    times = re.findall(
        r"^(threads|processes): 4 tasks of [\d.]+ s of CPU each took [\d.]+ s$",
        out,
        flags=re.MULTILINE,
    )
    assert times == ["threads", "processes"], out
    rows = _rows(out)
    assert {
        "ShoalThreadPool_0",
        "ShoalThreadPool_1",
        "ShoalPoolWorker-1",
        "ShoalPoolWorker-2",
    } <= set(rows)


def check_sync_blocking(out: str) -> None:
    assert re.findall(r"^file \d downloaded$", out, flags=re.MULTILINE) == [
        f"file {i} downloaded" for i in range(4)
    ]
    rows = _rows(out)
    workers = [bar for name, bar in rows.items() if name.startswith("ShoalPoolWorker")]
    # One task at a time: no column holds two tasks.
    for column in zip(*workers, strict=True):
        assert sum(c != " " for c in column) <= 1, rows
    assert "~" in rows["main"]


def check_sync_nonblocking(out: str) -> None:
    m = re.search(
        r"^glanced (\d+) times; then get\(\) gave 'big file downloaded'$", out, flags=re.MULTILINE
    )
    assert m and int(m[1]) >= 1, out


def check_async_blocking(out: str) -> None:
    assert "['file 0 downloaded', 'file 1 downloaded', 'file 2 downloaded']" in out


def check_async_nonblocking(out: str) -> None:
    assert re.search(
        r"^ding! big file downloaded \(on thread (?!MainThread)\S+\)$", out, flags=re.MULTILINE
    ), out
    assert "*" in _rows(out)["callback"]


def check_daemon(out: str) -> None:
    lines = re.findall(
        r"^worker (\S+): daemon=False, its own pool returned \[0, 1, 4\]$", out, flags=re.MULTILINE
    )
    assert len(lines) == 2, out
    assert "multiprocessing.Pool: AssertionError: daemonic processes are not allowed" in out
    assert sum(" > " in name for name in _rows(out)) >= 2


def check_shared_memory(out: str) -> None:
    assert "the Manager list has 100 entries" in out
    m = re.search(r"^appends per worker: \[([\d, ]+)\]$", out, flags=re.MULTILINE)
    assert m and sum(int(x) for x in m[1].split(",")) == 100, out
    assert "the plain list has 0 entries" in out


def check_ipc(out: str) -> None:
    messages = "['message 0', 'message 1', 'message 2']"
    assert f"sent {messages}, got {messages}" in out
    rows = _rows(out)
    assert rows["queue.put"].count("*") >= 1 and rows["queue.get"].count("*") >= 1


CHECKS: dict[str, Callable[[str], None]] = {
    "parallelism.py": check_parallelism,
    "sync_blocking.py": check_sync_blocking,
    "sync_nonblocking.py": check_sync_nonblocking,
    "async_blocking.py": check_async_blocking,
    "async_nonblocking.py": check_async_nonblocking,
    "daemon.py": check_daemon,
    "shared_memory.py": check_shared_memory,
    "ipc.py": check_ipc,
}


def test_every_example_has_a_page_and_a_check() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(PAGES.values())
    assert sorted(p.name for p in GUIDE.glob("0*.md")) == sorted(PAGES)
    assert set(CHECKS) == set(PAGES.values())


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_and_draws_its_timeline(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "SHOAL_TIME_SCALE": str(SCALE), "SHOAL_GUIDE_IMG_DIR": str(tmp_path)}
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=CEILING,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - began < CEILING
    # It printed its text Gantt chart...
    assert re.search(
        r"^\d+ tasks? on \d+ workers? in \d+\.\d\d s, 0 failed \(!\)$",
        proc.stdout,
        flags=re.MULTILINE,
    ), proc.stdout
    CHECKS[name](proc.stdout)
    # ...and drew its picture where it was told to, not into the committed one.
    png = tmp_path / name.replace(".py", ".png")
    assert png.read_bytes()[:8] == PNG
    assert png.stat().st_size > 5000


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_shows_its_example_and_picture(page: str) -> None:
    text = (GUIDE / page).read_text()
    example = PAGES[page]
    source = (EXAMPLES / example).read_text()
    assert f"(../../examples/guide/{example})" in text
    image = example.replace(".py", ".png")
    assert f"(img/{image})" in text
    assert (GUIDE / "img" / image).read_bytes()[:8] == PNG
    # The code on the page is the example's code, line for line (so it cannot go stale).
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, page
    lines = source.splitlines()
    for block in blocks:
        wanted = block.splitlines()
        starts = [i for i, line in enumerate(lines) if line == wanted[0]]
        assert any(lines[i : i + len(wanted)] == wanted for i in starts), (
            f"{page}: this block is not in {example}:\n{block}"
        )
    assert f"shoal demo --scene {page[3:-3]}" in text


def test_index_links_every_page() -> None:
    index = (GUIDE / "README.md").read_text()
    for page, example in PAGES.items():
        assert f"({page})" in index and f"(../../examples/guide/{example})" in index


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_shape(name: str) -> None:
    """Like the tutorial's examples: the pool under the __main__ guard (spawn re-imports the
    script), nothing but definitions outside it, sleeps through the time scale."""
    tree = ast.parse((EXAMPLES / name).read_text())
    guards = [
        n
        for n in tree.body
        if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'"
    ]
    assert len(guards) == 1
    for node in tree.body:
        if node is not guards[0]:
            assert isinstance(
                node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.Assign | ast.Expr
            ), ast.unparse(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "time.sleep":
            assert "TIME_SCALE" in ast.unparse(node.args[0]), ast.unparse(node)
