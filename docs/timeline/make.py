"""Make the committed timeline pictures from the committed trace.

    python docs/timeline/make.py            # gantt.png and page.png from demo_trace.json
    python docs/timeline/make.py --record   # first record demo_trace.json anew

``--record`` runs ``python -m shoal demo --scene parallelism --trace demo_trace.json``: the
demo's first scene runs the same CPU-bound tasks on a ThreadPool(2), then on a Pool(2), and
writes one trace per pool (``demo_trace-parallelism-1.json``, ``-2``); ``Timeline.merge`` joins
them into ``demo_trace.json``, so one picture shows the threads taking turns, then the
processes running side by side. Then:

* ``gantt.png``: ``Timeline.load(trace).to_png(...)`` (matplotlib);
* ``page.html`` is not kept; ``page.png`` is headless Chromium's screenshot of
  ``Timeline.to_html``, at 1200 x 800.

``tests/observe/test_artifacts.py`` redraws both from the committed trace and compares them
with the committed pictures, so they cannot drift from the code. Record on an idle machine: the
trace holds that machine's timing, and on busy cores the processes cannot run side by side.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRACE = HERE / "demo_trace.json"
GANTT = HERE / "gantt.png"
PAGE = HERE / "page.png"
WINDOW = (1200, 800)
TITLE = "shoal demo --scene parallelism: ThreadPool(2), then Pool(2), on CPU-bound tasks"
CHROMIUM = "/usr/bin/chromium"
#: Headless, offline, no first-run work: the screenshot depends on the page alone.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


def chromium() -> str:
    """The Chromium binary; an AssertionError that says how to install it when missing."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    assert found, (
        f"{CHROMIUM} is missing: headless Chromium renders the timeline pages "
        "(apt-get install -y chromium; nox's sessions install it when run as root on Debian)"
    )
    return found


def _run_chromium(html: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="shoal-chromium-") as profile:
        return subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                *args,
                html.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def screenshot(html: Path, png: Path, size: tuple[int, int] = WINDOW) -> None:
    """Headless Chromium's screenshot of ``html`` (a file), ``size`` pixels."""
    png.unlink(missing_ok=True)
    proc = _run_chromium(
        html, f"--screenshot={png.resolve()}", f"--window-size={size[0]},{size[1]}"
    )
    assert png.exists(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr}"


def dump_dom(html: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium serializes it."""
    proc = _run_chromium(html, "--dump-dom")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def record(trace: Path = TRACE) -> None:
    """Run the demo's parallelism scene and keep its two timelines, merged, as ``trace``."""
    from shoal.observe import Timeline

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "demo_trace.json"
        subprocess.run(
            [sys.executable, "-m", "shoal", "demo", "--scene", "parallelism", "--trace", str(base)],
            check=True,
        )
        parts = [Timeline.load(Path(tmp) / f"demo_trace-parallelism-{n}.json") for n in (1, 2)]
        Timeline.merge(*parts, title=TITLE).to_chrome_trace(trace)


def render(trace: Path, gantt: Path, page: Path) -> None:
    """Draw ``trace`` as a PNG Gantt (``gantt``) and a screenshot of its HTML page (``page``)."""
    from shoal.observe import Timeline

    timeline = Timeline.load(trace)
    timeline.to_png(gantt)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "page.html"
        timeline.to_html(html)
        screenshot(html, page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record demo_trace.json anew")
    args = parser.parse_args()
    if args.record:
        record()
    render(TRACE, GANTT, PAGE)
    print(
        f"wrote {GANTT.relative_to(Path.cwd()) if GANTT.is_relative_to(Path.cwd()) else GANTT}"
        f" and {PAGE.name}"
    )


if __name__ == "__main__":
    main()
