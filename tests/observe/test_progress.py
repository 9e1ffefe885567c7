"""ProgressBar: counts from many threads, draws with tqdm or rich in a terminal, and prints plain
lines, never carriage returns, where there is none (a pipe, a log file)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from shoal.observe import ProgressBar

LIVE = 60.0

#: A script that drives a bar from 4 threads, the way a pool's backend thread would: 200 items,
#: 10 of them failed. argv: kind, and "no-tqdm" to make tqdm unimportable.
SCRIPT = """
import sys, threading
if "no-tqdm" in sys.argv:
    sys.modules["tqdm"] = None
from shoal.observe import ProgressBar
bar = ProgressBar(total=200, desc="work", kind=sys.argv[1], interval=0.01, every=0.05)
def run(k):
    for i in range(50):
        bar.update(ok=(k * 50 + i) % 20 != 7)
threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
bar.close()
print("kind:", bar.kind, flush=True)
"""

POOL_SCRIPT = """
import shoal
if __name__ == "__main__":
    with shoal.Pool(2) as pool:
        out = pool.map(abs, range(-500, 0), progress="abs", chunksize=10)
    print("sum:", sum(out), flush=True)
"""


def _piped(*args: str, code: str = SCRIPT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=LIVE,
        check=True,
    )


def _in_terminal(*args: str, size: tuple[int, int] = (30, 100)) -> str:
    """Run SCRIPT with stdout and stderr on a pseudo-terminal of ``size`` (rows, columns);
    everything it wrote."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(LIVE) == 0
    return b"".join(chunks).decode("utf-8", "replace")


FINAL = re.compile(r"^work: 200/200 \(100%\) done, 10 failed, in \d+\.\d+ s \(\d+\.\d/s\)$")


@pytest.mark.parametrize("kind", ["auto", "tqdm", "rich", "plain"])
def test_no_carriage_returns_in_a_pipe(kind: str) -> None:
    proc = _piped(kind)
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    assert "\x1b" not in proc.stderr  # nor terminal escape sequences
    lines = proc.stderr.splitlines()
    assert FINAL.match(lines[-1]), proc.stderr
    # Lines in between show progress, never more than the total.
    for line in lines[:-1]:
        m = re.match(r"work: (\d+)/200 \(\d+%\), (\d+) failed, [\d.]+/s", line)
        assert m and int(m[1]) <= 200 and int(m[2]) <= 10, line
    assert "kind: plain" in proc.stdout


def test_a_pool_map_with_progress_in_a_pipe() -> None:
    proc = _piped(code=POOL_SCRIPT)
    assert "sum: 125250" in proc.stdout
    assert "\r" not in proc.stderr
    assert re.search(r"^abs: 500/500 \(100%\) done, 0 failed, in ", proc.stderr, re.MULTILINE), (
        proc.stderr
    )


@pytest.mark.parametrize("size", [(30, 100), (0, 0)], ids=["100x30", "unsized"])
def test_tqdm_in_a_terminal(size: tuple[int, int]) -> None:
    out = _in_terminal("auto", size=size)
    assert "kind: tqdm" in out
    assert "\r" in out  # tqdm redraws its line
    assert re.search(r"work: 100%\|.*\| 200/200 .*failed=10", out), out


def test_rich_in_a_terminal() -> None:
    out = _in_terminal("rich")
    assert "kind: rich" in out
    assert re.search(r"200/200.*failed=10", out), out


def test_without_tqdm_a_terminal_gets_plain_lines() -> None:
    out = _in_terminal("auto", "no-tqdm")
    assert "kind: plain" in out
    assert "\r\n" in out  # the terminal's newlines; no bare carriage return
    assert "\r" not in out.replace("\r\n", "\n")
    assert re.search(r"work: 200/200 \(100%\) done, 10 failed", out), out


def test_asking_for_tqdm_without_it_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['tqdm'] = None\n"
        "from shoal.observe import ProgressBar\n"
        "class Tty:\n"
        "    def isatty(self): return True\n"
        "    def write(self, s): pass\n"
        "    def flush(self): pass\n"
        "try:\n"
        "    ProgressBar(3, kind='tqdm', file=Tty())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = _piped(code=code).stdout
    assert "shoal[progress]" in out, out


def test_counts_from_many_threads() -> None:
    sink = io.StringIO()
    bar = ProgressBar(total=None, desc="n", kind="auto", file=sink)
    assert bar.kind == "plain"  # a StringIO is no terminal
    go = threading.Barrier(8)

    def run(k: int) -> None:
        go.wait()
        for i in range(5000):
            bar.update(ok=i % 100 != 0)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIVE)
    bar.set_total(40000)
    bar.close()
    bar.close()  # idempotent
    assert (bar.done, bar.failed) == (40000, 400)
    assert sink.getvalue().splitlines()[-1].startswith("n: 40000/40000 (100%) done, 400 failed")


def test_update_is_cheap() -> None:
    """The backend's thread calls update for every item: it must only count. (A generous bound:
    drawing to a terminal per call would be thousands of times slower.)"""
    bar = ProgressBar(total=100000, kind="plain", file=io.StringIO())
    began = time.perf_counter()
    for _ in range(100000):
        bar.update()
    elapsed = time.perf_counter() - began
    bar.close()
    assert elapsed < 10.0


def test_bad_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        ProgressBar(kind="fancy")


def test_a_closed_stream_does_not_break_the_call(tmp_path: Path) -> None:
    stream = open(tmp_path / "log.txt", "w")  # noqa: SIM115 - closed below, on purpose early
    bar = ProgressBar(total=2, kind="plain", file=stream)
    bar.update()
    stream.close()
    bar.update()
    bar.close()
    assert bar.done == 2


def test_close_is_not_held_up_by_a_stream_that_takes_no_output() -> None:
    """The pool closes the bar on its own thread: a full pipe (a paused pager) must not hold
    that thread for long."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass  # full
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w", buffering=1)
    bar = ProgressBar(total=3, desc="stuck", kind="plain", file=stream)
    for _ in range(3):
        bar.update()
    began = time.monotonic()
    bar.close(timeout=0.2)
    assert time.monotonic() - began < LIVE
    assert bar._thread.is_alive()  # still trying to write its last line
    os.close(read_end)  # the reader goes away: the write fails, the bar's thread ends
    bar._thread.join(LIVE)
    assert not bar._thread.is_alive()
    try:
        stream.close()
    except OSError:
        pass  # the line still buffered cannot be flushed to a pipe without a reader
