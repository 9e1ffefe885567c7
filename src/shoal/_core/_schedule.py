"""Scheduling both facades share: chunk sizes, cutting input into chunks, feeding a backend."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from shoal._core._outcome import RAISED, Failure
from shoal._core._task import Chunk, Sink

__all__ = ["default_chunksize", "iter_chunks", "start_feeder", "submit_list"]


def default_chunksize(n_items: int, n_workers: int) -> int:
    """The stdlib Pool's rule: about four chunks per worker."""
    chunksize, extra = divmod(n_items, n_workers * 4)
    if extra:
        chunksize += 1
    return max(1, chunksize)


def iter_chunks(iterable: Iterable[Any], chunksize: int) -> Iterator[list[Any]]:
    """Cut an iterable into lists of ``chunksize``. An error from the iterable propagates from
    ``next()`` here, and the partial chunk it interrupted is dropped (as the stdlib Pool does:
    the error takes that chunk's place)."""
    it = iter(iterable)
    islice = itertools.islice
    while True:
        chunk = list(islice(it, chunksize))
        if not chunk:
            return
        yield chunk


def submit_list(
    submit: Callable[[Chunk], None],
    fn: Callable[..., Any],
    mode: int,
    items: Sequence[Any],
    chunksize: int,
    sink: Sink,
    opts: Any = None,
    job: int = 0,
) -> None:
    """Submit a list's items in chunks; a chunk that cannot be sent raises here."""
    for start in range(0, len(items), chunksize):
        part = items[start : start + chunksize]
        submit(Chunk(fn, mode, part, range(start, start + len(part)), sink, opts, job))


def start_feeder(
    submit: Callable[[Chunk], None],
    fn: Callable[..., Any],
    mode: int,
    iterable: Iterable[Any],
    chunksize: int,
    sink: Any,
    done: Callable[[], None],
    name: str,
    opts: Any = None,
    job: int = 0,
) -> threading.Thread:
    """Read an iterable in a thread and submit its chunks (``imap``): an error from the iterable
    becomes the failure of the position it interrupted, and ends the stream there.

    With a window on the sink, the input is read only as fast as results are consumed, and
    reading stops once the caller abandons the iterator.
    """
    window = sink.window

    def feed() -> None:
        index = 0
        try:
            for part in iter_chunks(iterable, chunksize):
                if window is not None and not window.wait_for_room(len(part)):
                    return
                chunk = Chunk(fn, mode, part, range(index, index + len(part)), sink, opts, job)
                index += len(part)
                try:
                    submit(chunk)
                except Exception as exc:  # noqa: BLE001 - it cannot be pickled
                    for i in chunk.indices:
                        sink.deliver(i, False, Failure(RAISED, exc))
                del chunk
        except BaseException as exc:  # noqa: BLE001 - the user's iterable raised
            sink.deliver(index, False, Failure(RAISED, exc))
            index += 1
        finally:
            sink.set_length(index)
            done()

    thread = threading.Thread(target=feed, name=name, daemon=True)
    thread.start()
    return thread
