"""Worker output and log records, shown in the parent.

A backend hands over whole lines of a worker's stdout/stderr and the log records its workers
made; one thread writes them to the parent's *current* ``sys.stdout``/``sys.stderr`` (so pytest's
capture and notebooks see them) and to the parent's logging handlers. The backend's own thread
never blocks on a slow reader: past a byte budget lines are dropped, counted, and the count is
said once there is room again.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from typing import Any

__all__ = ["OutputForwarder"]

#: Bytes of worker output that may wait for the writer before lines are dropped.
BUDGET = 4 << 20


class OutputForwarder:
    """Writes workers' lines and log records in the parent, on its own thread."""

    def __init__(self, name: str, budget: int = BUDGET) -> None:
        self._name = name
        self._budget = budget
        self._queue: deque[tuple[int, Any]] = deque()
        self._queued = 0
        self._dropped = 0
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._busy = False

    def lines(self, stream: int, data: bytes) -> None:
        """Queue complete lines (``data`` ends with a newline) for stream 1 or 2."""
        with self._cond:
            if self._queued + len(data) > self._budget:
                self._dropped += data.count(b"\n") or 1
                return
            self._queued += len(data)
            self._queue.append((stream, data))
            self._start()

    def record(self, record: logging.LogRecord) -> None:
        with self._cond:
            self._queue.append((0, record))
            self._start()

    def _start(self) -> None:
        # Called with the lock held.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        else:
            self._cond.notify_all()  # the writer, or flush() waiters: wake them all

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                self._busy = True
                stream, item = self._queue.popleft()
                dropped, self._dropped = self._dropped, 0
                if stream:
                    self._queued -= len(item)
            try:
                if dropped:
                    sys.stderr.write(
                        f"[shoal: {dropped} line(s) of worker output were dropped: the parent "
                        "did not keep up]\n"
                    )
                if stream == 0:
                    logging.getLogger(item.name).handle(item)
                else:
                    out = sys.stdout if stream == 1 else sys.stderr
                    out.write(item.decode(errors="replace"))
                    out.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not end us
                pass

    def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until what was queued so far is written."""
        with self._cond:
            if self._thread is None:
                return
            self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)
