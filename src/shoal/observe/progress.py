"""Progress bars for map-like calls: ``pool.map(fn, items, progress=True)``.

The facade makes one :class:`ProgressBar` per call and calls :meth:`ProgressBar.update` for every
item that ends, on the backend's own thread, which must never wait: so ``update`` only counts
(under a lock, no I/O), and a small thread of the bar's own draws it a few times a second. A
terminal or a notebook gets a tqdm bar (``pip install 'shoal[progress]'``) or, with
``kind="rich"``, a rich one (``shoal[rich]``), showing the rate, the time left and how many items
failed. Anywhere else (a log file, a pipe, CI) carriage-return animation would only fill the log
with garbage, so the bar prints a plain line now and then instead, and one at the end; the same
happens when tqdm is not installed.

A pool run inside a process worker does not draw: its counts travel to the parent
(``shoal/_core/_relay.py``), which shows each such inner call with :meth:`ProgressBar.nested`,
on a line of its own below the outer call's bar, in the outer bar's kind.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any

__all__ = ["ProgressBar"]

KINDS = ("auto", "tqdm", "rich", "plain")


def _is_notebook() -> bool:
    """True inside a Jupyter kernel (stdout is no terminal there, but widgets render)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _is_terminal(file: IO[str]) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """A thread-safe progress bar: counts finished and failed items, shows rate and ETA.

    Args:
        total: how many items the call has (None: not known yet; see :meth:`set_total`).
        desc: a label shown before the bar.
        kind: ``"auto"`` (tqdm when installed, in a terminal or a notebook), ``"tqdm"``,
            ``"rich"`` or ``"plain"``. Without a terminal or notebook every kind prints plain
            lines.
        file: where to draw (default: ``sys.stderr``).
        every: plain lines: at most one every this many seconds (and one at each quarter of the
            total, at most one a second), plus one at the end.
        interval: how often a tqdm or rich bar is redrawn, in seconds.
        began: when the counted work began (``time.monotonic()``; default: now), for the rate.

    Raises:
        ValueError: ``kind`` is not one of the above.
        ImportError: ``kind`` is ``"tqdm"`` or ``"rich"`` and that package is not installed.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str | None = None,
        kind: str = "auto",
        *,
        file: IO[str] | None = None,
        every: float = 10.0,
        interval: float = 0.1,
        began: float | None = None,
        _nested: bool = False,
        _under: ProgressBar | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.total = total
        self.desc = desc or ""
        self.done = 0
        self.failed = 0
        self.every = every
        self.interval = interval
        self._file: IO[str] = file if file is not None else sys.stderr
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._began = time.monotonic() if began is None else began
        #: The bar this one is drawn below (an inner call's, under its outer call's), or None.
        self._under = _under
        #: An inner call's bar: a tqdm or rich one is cleared when it ends (leaving one line per
        #: inner call would push the outer bar down the screen for ever).
        self._nested = _nested
        #: Why the bar was closed before its work ended (shown with the final counts), or None.
        self._why: str | None = None
        # Plain lines: when the last one was printed, and at which count / quarter.
        self._last_line = self._began
        self._last_count = 0
        self._last_quarter = 0
        self._tqdm: Any = None
        self._rich: Any = None
        self._rich_task: Any = None
        #: A row in another bar's rich display (which that bar stops), not a display of its own.
        self._rich_shared = False
        self.kind = self._choose(kind)
        if self.kind == "tqdm":
            self._start_tqdm()
        elif self.kind == "rich":
            self._start_rich()
        self._thread = threading.Thread(target=self._run, name="shoal-progress", daemon=True)
        self._thread.start()

    # -- called by the pool, on its own thread ---------------------------------------------------

    def update(self, ok: bool = True) -> None:
        """Count one finished item (``ok`` False: it failed). Cheap, thread-safe, never waits
        on the terminal."""
        with self._lock:
            self.done += 1
            if not ok:
                self.failed += 1

    def set_total(self, total: int | None) -> None:
        """Set the number of items, once it is known (an ``imap`` over a generator)."""
        with self._lock:
            self.total = total

    def show(self, done: int, failed: int, total: int | None) -> None:
        """Set the counts outright: a bar that mirrors counts made elsewhere (an inner call in a
        worker process, whose counts arrive in frames)."""
        with self._lock:
            self.done, self.failed, self.total = done, failed, total

    @classmethod
    def nested(
        cls, desc: str, total: int | None, began: float | None = None, outer: Any = None
    ) -> ProgressBar:
        """A bar for a map-like call run inside a worker, drawn by the parent below ``outer``
        (the outer call's ProgressBar, if it has one): in the same kind and on the same stream,
        in a rich bar's own display. Without an outer bar: the kind ``"auto"`` picks, on
        ``sys.stderr``. Counts come with :meth:`show`."""
        if isinstance(outer, ProgressBar):
            kind = outer.kind if outer.kind in KINDS else "auto"
            return cls(total, desc, kind, file=outer._file, began=began, _nested=True, _under=outer)
        return cls(total, desc, began=began, _nested=True)

    def close(self, timeout: float | None = 2.0, *, why: str | None = None) -> None:
        """Draw the final state and stop. Idempotent.

        Waits up to ``timeout`` seconds for the final state to be drawn, so it comes before
        whatever the caller prints next. The pool calls this on its own thread, which must not
        be held up for long by a terminal or pipe that does not take output (a paused ``less``):
        after ``timeout`` the bar finishes drawing on its own thread. ``why``: the work ended
        early (its worker died), said with the final counts.
        """
        if self._closed.is_set():
            return
        with self._lock:
            self._why = why
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return f"<ProgressBar {self.desc!r} {self.done}/{total}, {self.failed} failed>"

    # -- drawing, on the bar's own thread --------------------------------------------------------

    def _choose(self, kind: str) -> str:
        live = _is_terminal(self._file) or _is_notebook()
        if kind == "plain" or not live:
            return "plain"
        if kind == "rich":
            try:
                import rich  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "ProgressBar(kind='rich') needs rich: pip install 'shoal[rich]'"
                ) from exc
            return "rich"
        try:
            import tqdm  # noqa: F401
        except ImportError as exc:
            if kind == "tqdm":
                raise ImportError(
                    "ProgressBar(kind='tqdm') needs tqdm: pip install 'shoal[progress]'"
                ) from exc
            return "plain"
        return "tqdm"

    def _start_tqdm(self) -> None:
        from tqdm.auto import tqdm

        # A terminal that reports no size (a fresh pseudo-terminal, some CI runners) would get a
        # bar 0 columns wide on row 0 of 0, which tqdm does not draw at all: give it 80 x 24.
        try:
            size = os.get_terminal_size(self._file.fileno())
            sized = size.columns > 0 and size.lines > 0
        except (AttributeError, ValueError, OSError):
            sized = False
        self._tqdm = tqdm(
            total=self.total,
            desc=self.desc or None,
            unit="item",
            file=self._file,
            mininterval=self.interval,
            leave=not self._nested,
            dynamic_ncols=sized,
            ncols=None if sized else 80,
            nrows=None if sized else 24,
        )
        if self._nested:
            # The inner call began in its worker before its first counts got here: the elapsed
            # time and rate count from then (tqdm's clock is time.time).
            self._tqdm.start_t -= time.monotonic() - self._began
        self._tqdm.set_postfix_str("failed=0", refresh=False)

    def _start_rich(self) -> None:
        under = self._under
        if under is not None and under._rich is not None and not under._closed.is_set():
            # One live display at a time (rich refuses a second): a row in the outer bar's.
            self._rich = under._rich
            self._rich_shared = True
            self._rich_task = self._rich.add_task(self.desc, total=self.total, failed=0, rate="")
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._rich = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("failed={task.fields[failed]}"),
            console=Console(file=self._file),
            auto_refresh=False,
        )
        self._rich_task = self._rich.add_task(self.desc, total=self.total, failed=0, rate="")
        self._rich.start()

    def _snapshot(self) -> tuple[int, int, int | None]:
        with self._lock:
            return self.done, self.failed, self.total

    def _run(self) -> None:
        wait = self.interval if self.kind != "plain" else min(0.5, self.every)
        while not self._closed.wait(wait):
            self._draw(final=False)
        self._draw(final=True)

    def _draw(self, *, final: bool) -> None:
        done, failed, total = self._snapshot()
        if self.kind == "tqdm":
            bar = self._tqdm
            if bar.total != total:
                bar.total = total
            why = f", {self._why}" if final and self._why else ""
            bar.set_postfix_str(f"failed={failed}{why}", refresh=False)
            if done > bar.n:
                bar.update(done - bar.n)
            if final:
                bar.refresh()
                bar.close()
        elif self.kind == "rich":
            elapsed = time.monotonic() - self._began
            rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else ""
            self._rich.update(
                self._rich_task, completed=done, total=total, failed=failed, rate=rate
            )
            self._rich.refresh()
            if final:
                if self._rich_shared:
                    self._rich.remove_task(self._rich_task)
                else:
                    self._rich.stop()
        else:
            self._plain(done, failed, total, final)

    def _plain(self, done: int, failed: int, total: int | None, final: bool) -> None:
        now = time.monotonic()
        if not final:
            if done == self._last_count:
                return
            quarter = 4 * done // total if total else 0
            due = now - self._last_line >= self.every
            if not due and not (quarter > self._last_quarter and now - self._last_line >= 1.0):
                return
            self._last_quarter = quarter
        elapsed = now - self._began
        rate = done / elapsed if elapsed > 0 else 0.0
        label = f"{self.desc}: " if self.desc else ""
        count = f"{done}/{total}" if total is not None else f"{done}"
        if total:
            count += f" ({100 * done // total}%)"
        if final and self._why:
            line = f"{label}{count}, {failed} failed, ended after {_duration(elapsed)}: {self._why}"
        elif final:
            line = f"{label}{count} done, {failed} failed, in {_duration(elapsed)} ({rate:.1f}/s)"
        else:
            eta = ""
            if total and rate > 0:
                eta = f", ETA {_duration((total - done) / rate)}"
            line = f"{label}{count}, {failed} failed, {rate:.1f}/s{eta}"
        self._last_line, self._last_count = now, done
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream: progress is not worth failing the call for
