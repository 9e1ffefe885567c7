"""Large results: the wire's in-place reads and out-of-band buffers (``_wire.py``), then whole
pools returning results of every size, on every start method, with workers killed mid-frame."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import selectors
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import shoal
from helpers import large
from shoal._backends import _wire
from shoal._backends._wire import IN_PLACE, Frame, FrameReader, envelope, frame_header, write_parts
from shoal._core._pickling import dumps_result_parts

MB = 1 << 20
PIPE = 1 << 16  # a pipe's default buffer on Linux
GROWN = 1 << 18  # what a worker sending large results grows its result pipe to

# ---- the wire, on real pipes -------------------------------------------------------------


def _payload(n: int, seed: int) -> bytes:
    return b"R" + large.pattern(n - 1, seed) if n else b""


def _plain(payload: bytes) -> list[bytes]:
    return [frame_header(len(payload)), payload]


def _wrapped(inner: bytes, buffers: list[bytes]) -> list[Any]:
    return [envelope(len(inner), [len(b) for b in buffers]), inner, *buffers]


def _transfer(
    pieces: list[Any], count: int, *, chunk: int | None = None, close: bool = True
) -> tuple[list[Frame], bool]:
    """Write ``pieces`` into a real pipe from a thread (``write_parts``, or ``chunk`` bytes at a
    time), read them back with a FrameReader as the parent does (non-blocking, woken by a
    selector); ``(frames, reached end of file)``."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            if chunk is None:
                write_parts(w, pieces)
            else:
                data = b"".join(bytes(p) for p in pieces)
                for at in range(0, len(data), chunk):
                    _wire.write_all(w, data[at : at + chunk])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failed.append(exc)
        finally:
            if close:
                os.close(w)

    thread = threading.Thread(target=writer)
    thread.start()
    reader = FrameReader()
    frames: list[Frame] = []
    eof = False
    with selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        while len(frames) < count or close:
            assert sel.select(timeout=60), "the reader waited 60 s for data"
            try:
                got = reader.read(r)
            except BlockingIOError:
                continue
            if got is None:
                eof = True
                break
            frames.extend(got)
    thread.join(60)
    os.close(r)
    if not close:
        os.close(w)
    assert not failed, failed
    return frames, eof


#: Payload sizes around the read size, the in-place threshold and pipe buffers.
SIZES = sorted({
    1, 2, 37, 4096, IN_PLACE - 13, IN_PLACE - 1, IN_PLACE, IN_PLACE + 1, IN_PLACE + 13,
    PIPE - 4, PIPE + 4, 2 * PIPE + 1, GROWN - 1, GROWN, GROWN + 1, 3 * MB + 7,
})


@pytest.mark.parametrize("chunk", [None, 1000, PIPE - 3], ids=["writev", "by1000", "by65533"])
def test_frames_of_every_size_arrive_whole_and_in_order(chunk: int | None) -> None:
    payloads = [_payload(n, i) for i, n in enumerate(SIZES)]
    pieces = [p for payload in payloads for p in _plain(payload)]
    frames, eof = _transfer(pieces, len(payloads), chunk=chunk)
    assert eof
    assert [len(f) for f, _ in frames] == SIZES
    assert [bytes(f) for f, _ in frames] == payloads
    assert all(bufs == () for _, bufs in frames)


#: (inner payload size, buffer sizes) of V frames: small ones cut out of a read, large ones read
#: in place, empty buffers, buffers across pipe-buffer boundaries, many buffers.
WRAPPED = [
    (30, [1]),
    (30, [0, 5, 0]),
    (10, [IN_PLACE - 100]),
    (25, [IN_PLACE]),
    (IN_PLACE + 5, [3]),
    (40, [PIPE - 1, PIPE + 1, 0, GROWN + 3]),
    (100_000, [2 * MB + 1, 17]),
    (60, [IN_PLACE] * 40),
    (60, [100] * 1500),  # more buffers than one readv takes
]


@pytest.mark.parametrize("chunk", [None, 4093], ids=["writev", "by4093"])
def test_out_of_band_buffers_come_back_as_writable_bytearrays(chunk: int | None) -> None:
    expected = []
    pieces: list[Any] = []
    for i, (n, sizes) in enumerate(WRAPPED):
        inner = _payload(n, i)
        bufs = [large.pattern(s, 100 * i + j) for j, s in enumerate(sizes)]
        expected.append((inner, bufs))
        pieces += _wrapped(inner, bufs)
        pieces += _plain(_payload(50, i))  # a plain frame between: nothing runs into it
    frames, eof = _transfer(pieces, 2 * len(WRAPPED), chunk=chunk)
    assert eof
    assert len(frames) == 2 * len(WRAPPED)
    for (inner, bufs), (got, got_bufs) in zip(expected, frames[::2], strict=True):
        assert bytes(got) == inner
        assert [bytes(b) for b in got_bufs] == bufs
        assert all(type(b) is bytearray for b in got_bufs)  # writable, each its own memory
    assert [bytes(f) for f, _ in frames[1::2]] == [_payload(50, i) for i in range(len(WRAPPED))]


def test_the_long_length_form_is_read() -> None:
    # Lengths of 4 GiB or more use 0xFFFFFFFF and 8 more bytes; the reader takes that form for
    # any length, so both of its paths (cut, in place) are tested here without 4 GiB.
    big = 5 << 30
    assert frame_header(big) == b"\xff\xff\xff\xff" + big.to_bytes(8, "big")
    assert frame_header(0xFFFFFFFE) == b"\xff\xff\xff\xfe"
    long_form = [b"\xff\xff\xff\xff" + (n).to_bytes(8, "big") for n in (10, 3 * MB)]
    payloads = [_payload(10, 1), _payload(3 * MB, 2)]
    frames, _ = _transfer([long_form[0], payloads[0], long_form[1], payloads[1]], 2)
    assert [bytes(f) for f, _ in frames] == payloads
    # A 5 GiB frame's header alone: the reader waits for its payload (allocating nothing yet).
    reader = FrameReader()
    assert reader.feed(frame_header(big)) == []
    assert reader._need == big


def test_end_of_file_inside_a_frame_is_end_of_file() -> None:
    for n in (100, 3 * MB):  # cut from reads, read in place
        payload = _payload(n, 3)
        first = _plain(_payload(20, 1))
        frames, eof = _transfer([*first, frame_header(n), payload[: n // 2]], 1)
        assert eof
        assert [bytes(f) for f, _ in frames] == [_payload(20, 1)]
    inner, buf = _payload(10, 4), large.pattern(2 * MB, 5)
    head, *_ = _wrapped(inner, [buf])
    frames, eof = _transfer([head, inner, buf[:MB]], 0)
    assert eof and frames == []


def test_a_corrupt_envelope_is_refused() -> None:
    bad = b"V" + (1).to_bytes(4, "big") + (1000).to_bytes(8, "big") + b"Rxx"  # buffer > frame
    with pytest.raises(ValueError, match="corrupt V frame"):
        FrameReader().feed(frame_header(len(bad)) + bad)
    big = bad[:5] + (10 * MB).to_bytes(8, "big") + b"R" * (IN_PLACE + 1)
    with pytest.raises(ValueError, match="corrupt V frame"):
        FrameReader().feed(frame_header(len(big)) + big[:100])


def test_write_parts_writes_thousands_of_parts_through_a_full_pipe() -> None:
    parts: list[Any] = [large.pattern(i % 700, i) for i in range(3000)]  # > IOV_MAX parts
    parts += [memoryview(large.pattern(GROWN + 5, 9)), bytearray(b"end")]
    payload = b"".join(bytes(p) for p in parts)
    frames, _ = _transfer([frame_header(len(payload)), *parts], 1)
    assert bytes(frames[0][0]) == payload


def test_results_pickle_without_copying_their_large_parts() -> None:
    arr = np.arange(MB, dtype=np.uint8)
    small = np.arange(100, dtype=np.uint8)
    blob = large.pattern(MB, 1)
    parts, buffers = dumps_result_parts([arr, small, blob], IN_PLACE)
    # The big array goes out of band (its own memory), the small one in band; big bytes are a
    # part of their own, the very object (no copy).
    assert len(buffers) == 1 and np.shares_memory(np.frombuffer(buffers[0], np.uint8), arr)
    assert any(p is blob for p in parts)
    back = pickle.loads(b"".join(bytes(p) for p in parts), buffers=[bytearray(buffers[0])])
    assert np.array_equal(back[0], arr) and np.array_equal(back[1], small) and back[2] == blob


# ---- whole pools -----------------------------------------------------------------------------

#: Result specs for helpers.large.make: sizes around every boundary, types that must survive.
SPECS: list[tuple[Any, ...]] = [
    ("bytes", 0, 0),
    ("bytearray", 0, 1),
    ("array", 0, 2, np.uint8, "C"),
    *[("bytes", n, 3 + i) for i, n in enumerate(
        [1, IN_PLACE - 40, IN_PLACE - 1, IN_PLACE, IN_PLACE + 1, GROWN - 1, GROWN + 1, 3 * MB + 1]
    )],
    *[("array", n, 20 + i, np.uint8, "C") for i, n in enumerate(
        [IN_PLACE - 1, IN_PLACE, IN_PLACE + 1, PIPE * 4 + 1, 5 * MB]
    )],
    ("array", 2 * MB, 30, np.float64, "C"),
    ("array", 2 * MB, 31, np.complex128, "F"),
    ("array", 40_000, 32, np.int32, "F"),
    ("bytearray", 2 * MB + 3, 33),
    ("readonly", MB, 34),
    ("nested", MB, 35),
    ("nested", 1000, 36),
]


def _same(got: Any, want: Any) -> None:
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # bytes: random floats hold NaNs
        assert got.flags.writeable == want.flags.writeable
        assert got.flags.aligned
        assert got.flags.f_contiguous == want.flags.f_contiguous
        if got.flags.writeable and got.size:
            got.flat[0] = got.flat[-1]  # really writable
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            _same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    else:
        assert got == want


class Facade:
    def __init__(self, kind: str, method: str, **kwargs: Any) -> None:
        self.kind = kind
        if kind == "pool":
            self.pool: Any = shoal.Pool(2, context=method, **kwargs)
        else:
            self.pool = shoal.ProcessPoolExecutor(2, mp_context=method, **kwargs)

    def map(self, fn: Callable[..., Any], items: list[Any], chunksize: int = 1) -> list[Any]:
        if self.kind == "pool":
            return list(self.pool.map_async(fn, items, chunksize).get(timeout=120))
        return list(self.pool.map(fn, items, timeout=120, chunksize=chunksize))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.kind == "pool":
            return self.pool.apply_async(fn, args).get(timeout=60)
        return self.pool.submit(fn, *args).result(timeout=60)

    def close(self) -> None:
        if self.kind == "pool":
            self.pool.close()
            self.pool.join()
        else:
            self.pool.shutdown(wait=True)


@pytest.fixture(params=["pool", "executor"])
def facade(request: pytest.FixtureRequest, start_method: str) -> Iterator[Facade]:
    f = Facade(request.param, start_method)
    yield f
    f.close()


def test_results_of_every_size_and_type_come_back_intact(facade: Facade) -> None:
    want = [large.expected(s) for s in SPECS]
    for chunksize in (1, 4, len(SPECS)):  # one result per frame, several, all in one
        got = facade.map(large.make, SPECS, chunksize)
        _same(got, want)
    # The pool is as good as new: small results after large ones.
    assert facade.map(abs, list(range(-50, 50)), 7) == [abs(i) for i in range(-50, 50)]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_many_large_results_at_once_from_both_workers(method: str) -> None:
    barrier = multiprocessing.get_context(method).Barrier(2)
    sizes = [(1 + i % 4) * MB + i for i in range(40)]
    with shoal.Pool(2, context=method, initializer=large.init_barrier, initargs=(barrier,)) as pool:
        got = {}
        for i, (pid, arr) in enumerate(
            pool.imap(_call_block, list(enumerate(sizes)), chunksize=1)
        ):
            got[i] = (pid, arr)
        pids = {pid for pid, _ in got.values()}
    assert len(pids) == 2  # both workers sent results, at the same time (the barrier)
    for i, size in enumerate(sizes):
        arr = got[i][1]
        assert arr.shape == (size,) and arr[0] == i % 256 and arr[-1] == i % 251
        assert arr.flags.writeable


def _call_block(pair: tuple[int, int]) -> tuple[int, Any]:
    return large.block_after_meeting(*pair)


def test_traced_chunks_with_large_results(start_method: str) -> None:
    specs = [("array", (1 + i % 3) * MB, i, np.uint8, "C") for i in range(12)]
    with shoal.Pool(2, context=start_method, trace=True) as pool:
        got = pool.map(large.make, specs, chunksize=2)
        pool.close()
        pool.join()
        tasks = pool.timeline.tasks()
    _same(got, [large.expected(s) for s in specs])
    assert sum(t.count for t in tasks) == len(specs)
    assert all(t.ok for t in tasks)


def _can_see_pipe_writes() -> bool:
    """Does this kernel say where a thread sleeps (``/proc/.../wchan``), so a worker can tell
    it is blocked writing to its pipe?"""
    r, w = os.pipe()
    seen = threading.Event()

    def block() -> None:
        try:
            os.write(w, b"x" * (4 * PIPE))  # more than the pipe holds: blocks
        except OSError:
            pass

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    tid = thread.native_id
    assert tid is not None
    for _ in range(2000):
        if large._in_pipe_write(tid):
            seen.set()
            break
        thread.join(0.001)
    os.close(r)  # the blocked write fails (EPIPE) and the thread ends
    thread.join(10)
    os.close(w)
    return seen.is_set()


needs_wchan = pytest.mark.skipif(
    not _can_see_pipe_writes(), reason="this kernel does not show where a thread sleeps"
)


@needs_wchan
def test_a_worker_killed_while_writing_a_large_result(facade: Facade) -> None:
    with pytest.raises(shoal.WorkerDied) as info:
        facade.call(large.die_while_writing, 64 * MB)
    assert isinstance(info.value, concurrent.futures.process.BrokenProcessPool)
    assert info.value.exitcode == -signal.SIGKILL, info.value
    # Nothing is stuck, nothing half-read is left over: large and small results flow again.
    specs = [("array", 3 * MB, i, np.uint8, "C") for i in range(4)]
    _same(facade.map(large.make, specs), [large.expected(s) for s in specs])
    assert facade.call(abs, -3) == 3


@needs_wchan
@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_a_result_lost_mid_frame_is_retried(kind: str, start_method: str, tmp_path: Any) -> None:
    f = Facade(kind, start_method, retries=1)
    try:
        arr = f.call(large.die_while_writing, 64 * MB, str(tmp_path / "died-once"))
        assert (tmp_path / "died-once").exists()  # the first attempt was the one killed
        assert arr.shape == (64 * MB,) and arr.all() and arr.flags.writeable
        stats = f.pool.statistics()
        assert stats.tasks_retried == 1
    finally:
        f.close()
