"""Scheduling both facades share: chunk sizes, cutting input into chunks, feeding a backend."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from shoal._core._outcome import RAISED, Failure
from shoal._core._task import Chunk, ItemsLater, Sink

__all__ = [
    "MIN_CHUNK_SECONDS",
    "chunk_sizes",
    "default_chunksize",
    "iter_chunks",
    "start_feeder",
    "submit_list",
]


def default_chunksize(n_items: int, n_workers: int) -> int:
    """The stdlib Pool's rule: about four chunks per worker."""
    chunksize, extra = divmod(n_items, n_workers * 4)
    if extra:
        chunksize += 1
    return max(1, chunksize)


#: A chunk should take at least this long when the time of one task is known: the cost of a
#: chunk's round trip (tens of microseconds) then stays a few percent of it.
MIN_CHUNK_SECONDS = 0.002


def chunk_sizes(n_items: int, n_workers: int, item_time: float | None = None) -> list[int]:
    """Chunk sizes for a map without a ``chunksize``: the stdlib's size first, then smaller.

    With equal chunks the last ones end unevenly: one worker finishes its last chunk while the
    others are still on theirs, idle for up to a chunk's time (a 25-task chunk of 1 ms tasks:
    25 ms, an eighth of a 200 ms map on 2 workers). Here each chunk is at most a share of what
    is left (``remaining / (2 * workers)``, guided self-scheduling), so the last ones are small
    and the workers end together; but never below a floor that keeps the per-chunk cost small:
    ``MIN_CHUNK_SECONDS`` of work when ``item_time`` (measured on earlier calls) is known, else
    a 32nd of a worker's share (a handful of chunks more than the stdlib's rule in all).
    """
    if n_items <= 0:
        return []
    top = default_chunksize(n_items, n_workers)
    if item_time is not None and item_time > 0:
        floor = min(top, max(1, int(MIN_CHUNK_SECONDS / item_time)))
    else:
        floor = max(1, -(-n_items // (32 * n_workers)))
    sizes = []
    remaining = n_items
    while remaining > 0:
        size = min(top, max(floor, -(-remaining // (2 * n_workers))), remaining)
        sizes.append(size)
        remaining -= size
    return sizes


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


#: A map's chunks that start within its first this many items are pickled in the caller's
#: thread, the rest by the backend's (``submit_list``'s ``many``). The caller pickles while the
#: backend's thread waits in system calls, but holds the GIL meanwhile: this many small items
#: take a few milliseconds, under the interpreter's switch interval (5 ms), so the backend's
#: thread is not kept from sending the first chunks for long.
EAGER_ITEMS = 65_536


def submit_list(
    submit: Callable[[Chunk], None],
    fn: Callable[..., Any],
    mode: int,
    items: Sequence[Any],
    chunksize: int | Sequence[int],
    sink: Sink,
    opts: Any = None,
    job: int = 0,
    many: Callable[[list[Chunk], int], None] | None = None,
) -> None:
    """Submit a list's items in chunks of ``chunksize`` (or of each size in turn, see
    :func:`chunk_sizes`); a chunk that cannot be sent raises here.

    ``many``: the backend's way to queue the chunks after the first in one go,
    ``many(chunks, eager)``: their items are :class:`ItemsLater`; it cuts and pickles the first
    ``eager`` of them in this thread, and its own thread the others. Only the first chunk then
    raises (a function or items that cannot be pickled at all fail the call at once); a later
    one that cannot be pickled fails its own items."""
    if isinstance(chunksize, int):
        starts = range(0, len(items), chunksize)
        sizes: Sequence[int] = [chunksize] * len(starts)
    else:
        starts = list(itertools.accumulate(chunksize[:-1], initial=0))  # type: ignore[assignment]
        sizes = chunksize
    bounds = [
        (start, min(start + size, len(items))) for start, size in zip(starts, sizes, strict=True)
    ]
    for start, stop in bounds if many is None else bounds[:1]:
        submit(Chunk(fn, mode, items[start:stop], range(start, stop), sink, opts, job))
    if many is not None and len(bounds) > 1:
        rest = [
            Chunk(
                fn, mode, ItemsLater(items, start, stop),  # type: ignore[arg-type]
                range(start, stop), sink, opts, job,
            )
            for start, stop in bounds[1:]
        ]
        many(rest, sum(1 for start, _ in bounds[1:] if start < EAGER_ITEMS))


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
