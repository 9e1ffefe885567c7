"""The unit of work every backend runs: a chunk of calls to one function.

A facade turns ``apply``/``submit``/``map`` into chunks; a backend runs each chunk on a worker and
hands every item's outcome back to the chunk's sink (the facade's result object). Backends know
nothing of the facades beyond the :class:`Sink` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["CALL", "ONE", "STAR", "Chunk", "ItemsLater", "Sink"]

#: ``fn(*args, **kwargs)``; each item is an ``(args, kwargs)`` pair (apply, submit).
CALL = 0
#: ``fn(item)`` (map, imap).
ONE = 1
#: ``fn(*item)`` (starmap, Executor.map).
STAR = 2


class Sink(Protocol):
    """What a backend reports to: the facade's result object for one job.

    A sink may have a ``call`` attribute (an executor's ``map`` gives its batches, each with a
    sink of its own, one shared object): chunks whose sinks share a ``call`` belong to one call,
    and so do chunks of one sink. The process backend sends a large buffer once per call. A
    call (the ``call`` object, else the sink) whose input is read as results are consumed
    (``imap``) says so with ``streams = True``: the large buffers of its items are then held only
    while their own chunks are, so a long stream does not keep them all.
    """

    def claim(self) -> bool:
        """Called before a chunk goes to a worker; False means cancelled, so drop it."""
        ...

    def deliver(self, index: int, ok: bool, value: Any) -> None:
        """Record one item's outcome. Must not block: it runs on the backend's own thread.

        ``value`` is the result when ``ok``, else a :class:`shoal._core._outcome.Failure`.
        """
        ...


class ItemsLater:
    """A chunk's items not cut from the caller's list yet: the backend's own thread cuts them
    (``take()``) when it pickles the chunk (see the process backend's ``submit_many``)."""

    __slots__ = ("source", "start", "stop")

    def __init__(self, source: Sequence[Any], start: int, stop: int) -> None:
        self.source = source
        self.start = start
        self.stop = stop

    def take(self) -> Sequence[Any]:
        return self.source[self.start : self.stop]


class Chunk:
    """A batch of calls to one function, with the positions its items hold in their job."""

    __slots__ = ("fn", "history", "indices", "items", "job", "mode", "opts", "sink", "wire")

    def __init__(
        self,
        fn: Callable[..., Any],
        mode: int,
        items: Sequence[Any],
        indices: Sequence[int],
        sink: Sink,
        opts: Any = None,
        job: int = 0,
    ) -> None:
        self.fn = fn
        #: The call this chunk belongs to (for timelines and statistics).
        self.job = job
        self.mode = mode
        self.items = items
        self.indices = indices
        self.sink = sink
        #: The call's TaskOptions (retries, time limit), or None for the defaults.
        self.opts = opts
        #: Earlier failed attempts per item position (only once an item was retried).
        self.history: dict[int, list[str]] | None = None
        #: What a backend caches for sending (the process backend's encoded payload).
        self.wire: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, positions: Sequence[int]) -> Chunk:
        """A chunk of some of this chunk's items (to run again after a worker died)."""
        part = Chunk(
            self.fn,
            self.mode,
            [self.items[p] for p in positions],
            [self.indices[p] for p in positions],
            self.sink,
            self.opts,
            self.job,
        )
        if self.history:
            old_history = self.history
            kept = {
                new: old_history[old] for new, old in enumerate(positions) if old in old_history
            }
            part.history = kept or None
        return part

    def attempts(self, pos: int) -> int:
        """How many attempts item ``pos`` has had, the current one included."""
        if self.history is None:
            return 1
        return len(self.history.get(pos, ())) + 1

    def release(self) -> None:
        """Drop every reference to the user's function and arguments once the chunk is done."""
        self.fn = None  # type: ignore[assignment]
        self.items = ()
        self.wire = None

