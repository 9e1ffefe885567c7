"""The pictures of a timeline: the PNG Gantt (matplotlib) and the HTML page, rendered by headless
Chromium. Chromium is required: without it these tests fail (the project's nox sessions install
it), they do not skip."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from shoal._core._events import TaskEvent
from shoal.observe import Timeline, write_html
from shoal.observe._layout import COLORS

from ._helpers import BASE, color_pixels, make_module, read_png, synthetic

# -- PNG -----------------------------------------------------------------------------------------


def test_png_is_written_and_shows_the_tasks(tmp_path: Path) -> None:
    timeline = synthetic()
    path = tmp_path / "gantt.png"
    timeline.to_png(path, width=10, dpi=100)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = read_png(path)
    height, width = image.shape[:2]
    assert width == 1000  # 10 inches at 100 dpi
    assert 150 < height < 400  # 5 rows
    # Bars in both outcome colors, the failed ones far fewer (3 of 40).
    ok, failed = color_pixels(image, COLORS["ok"]), color_pixels(image, COLORS["failed"])
    assert ok > 20000, ok
    assert 500 < failed < ok / 3, (ok, failed)
    assert color_pixels(image, COLORS["approximate"]) > 500
    # The same timeline draws the same picture.
    again = tmp_path / "again.png"
    timeline.to_png(again, width=10, dpi=100)
    assert again.read_bytes() == path.read_bytes()


def test_png_grows_with_the_rows(tmp_path: Path) -> None:
    small, big = Timeline(), Timeline()
    for i in range(12):
        event = TaskEvent(0, i, f"w{i}", i, BASE + i, BASE + i + 1, True)
        big.task_done(event)
        if i < 2:
            small.task_done(event)
    small.to_png(tmp_path / "small.png")
    big.to_png(tmp_path / "big.png")
    assert read_png(tmp_path / "big.png").shape[0] > read_png(tmp_path / "small.png").shape[0]


def test_png_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from shoal.observe import Timeline\n"
        "try:\n"
        f"    Timeline().to_png({str(tmp_path / 'x.png')!r})\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "ImportError:" in out and "shoal[plot]" in out, out
    assert not (tmp_path / "x.png").exists()


# -- HTML ----------------------------------------------------------------------------------------


def test_html_is_self_contained(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    synthetic().to_html(path, title="a </script><b>title</b>")
    text = path.read_text()
    # Nothing to fetch: no src/href attributes, no URL but the SVG namespace name.
    assert not re.search(r"\b(src|href)\s*=", text)
    assert set(re.findall(r"https?://[^\s\"']+", text)) == {"http://www.w3.org/2000/svg"}
    # The title is escaped where it is markup, and cannot end the data's script element.
    assert "<b>title</b>" not in text.split('id="timelines"')[0]
    assert text.count("</script>") == 2


def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    make = make_module()
    timeline = synthetic()
    page = tmp_path / "page.html"
    timeline.to_html(page)
    # The DOM after the page's script ran: one row per worker and note row, one bar per task.
    dom = make.dump_dom(page)
    assert 'data-drawn="1"' in dom, dom[:2000]
    rows = re.findall(r'<g class="row (worker|note)" data-name="([^"]*)"', dom)
    assert rows == [("worker", f"ShoalPoolWorker-{i}") for i in range(1, 5)] + [("note", "main")]
    assert len(re.findall(r'class="task ok"', dom)) == 37
    assert len(re.findall(r'class="task failed"', dom)) == 3
    assert len(re.findall(r'class="note mark"', dom)) == 1
    # The screenshot: the window's size, and not blank: both outcome colors, in bars.
    shot = tmp_path / "shot.png"
    make.screenshot(page, shot, (1200, 800))
    image = read_png(shot)
    assert image.shape[:2] == (800, 1200)
    ok, failed = color_pixels(image, COLORS["ok"]), color_pixels(image, COLORS["failed"])
    assert ok > 20000 and failed > 1000, (ok, failed)


def test_a_page_with_several_timelines(tmp_path: Path) -> None:
    make = make_module()
    page = tmp_path / "all.html"
    write_html(
        page, [("first", synthetic(n=5)), ("second", synthetic(n=7, workers=2))], title="two"
    )
    dom = make.dump_dom(page)
    assert 'data-drawn="2"' in dom
    assert len(re.findall(r'<svg class="gantt"', dom)) == 2
    assert len(re.findall(r'class="task (ok|failed)"', dom)) == 12
    assert "<h2>first</h2>" in dom and "<h2>second</h2>" in dom


def test_an_empty_timeline_still_draws(tmp_path: Path) -> None:
    empty = Timeline()
    empty.to_png(tmp_path / "empty.png")
    assert read_png(tmp_path / "empty.png").shape[1] == 1000
    empty.to_html(tmp_path / "empty.html")
    assert "(no tasks)" in (tmp_path / "empty.html").read_text()
