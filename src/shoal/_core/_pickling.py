"""Pickling rules shared by the parent and its workers (DESIGN.md, Pickling).

* Functions and arguments: plain pickle, except that functions and classes of ``__main__`` (and
  anything plain pickle cannot send: lambdas, closures) travel by value through cloudpickle, so a
  worker that never ran the main script, or was forked before they were defined, can still run
  them.
* In a worker, code that arrived by value is rebound to one namespace per worker (the worker's own
  ``__main__``), so an initializer that sets a global is seen by later tasks.
* Results: plain pickle, except that classes and functions of ``__main__`` go back by reference,
  so the parent gets its own class back rather than a copy.
* Large buffers (``dumps(obj, buffers)``): numpy arrays and other buffers of ``OUT_OF_BAND``
  bytes or more, and large bytes and bytearrays bound in a ``functools.partial`` or given as a
  task's item or argument, leave the pickle (protocol 5, out of band); the process backend
  sends them once through shared memory.
"""

from __future__ import annotations

import functools
import io
import itertools
import pickle
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from shoal._core._task import CALL, ONE, STAR

try:  # blake2b itself: hashlib would load OpenSSL too (about 3 ms of a first pool's start)
    from _blake2 import blake2b as _blake2b
except ImportError:  # pragma: no cover - a build without it
    from hashlib import blake2b as _blake2b

__all__ = [
    "OUT_OF_BAND",
    "PROTOCOL",
    "digest",
    "dumps",
        "dumps_result",
    "dumps_result_parts",
    "loads",
    "lookup_main",
    "mark_large_bytes",
    "rebind_to_main",
]

PROTOCOL = 5
#: Buffers of at least this many bytes leave the pickle when ``dumps`` is given a list to
#: collect them in: below it, a copy through the pipe costs less than a shared segment.
OUT_OF_BAND = 1 << 20

_FUNCTION_TYPES = (types.FunctionType, type)


def _by_value(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


class _NeedsValue(Exception):
    """Raised inside :class:`_PlainPickler` for what must travel by value."""


def _registered_by_value(obj: Any) -> bool:
    """True if the user asked cloudpickle to send ``obj``'s module by value
    (``cloudpickle.register_pickle_by_value``)."""
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is None:
        return False
    registry = cloudpickle.list_registry_pickle_by_value()
    module = getattr(obj, "__module__", None) or ""
    return any(module == name or module.startswith(name + ".") for name in registry)


class _PlainPickler(pickle.Pickler):
    """Plain pickle, refusing what goes by value: ``__main__`` functions and classes, and those
    of modules registered with cloudpickle by value."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _FUNCTION_TYPES) and (_by_value(obj) or _registered_by_value(obj)):
            raise _NeedsValue
        return NotImplemented


class _LargeBytes:
    """Stands in for a large ``bytes`` or ``bytearray`` while pickling: the pickler never
    offers those to ``reducer_override``, so only a stand-in can send them out of band.
    Unpickles as the original type (a copy of the buffer's content, as plain pickle gives)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        return type(self.data), (pickle.PickleBuffer(self.data),)


_BYTES = frozenset((bytes, bytearray))


def _is_large_bytes(obj: Any) -> bool:
    return type(obj) in _BYTES and len(obj) >= OUT_OF_BAND


def _mark(obj: Any) -> Any:
    return _LargeBytes(obj) if _is_large_bytes(obj) else obj


def _large_reduce(obj: Any) -> Any:
    """How the out-of-band picklers send a partial that binds large bytes or bytearrays;
    None for anything else."""
    if type(obj) is functools.partial and (
        any(map(_is_large_bytes, obj.args))
        or (obj.keywords and any(map(_is_large_bytes, obj.keywords.values())))
    ):
        keywords = {k: _mark(v) for k, v in obj.keywords.items()} or None
        state = (obj.func, tuple(map(_mark, obj.args)), keywords, obj.__dict__ or None)
        return functools.partial, (obj.func,), state
    return None


class _OutOfBandPickler(_PlainPickler):
    def reducer_override(self, obj: Any) -> Any:
        large = _large_reduce(obj)
        return large if large is not None else super().reducer_override(obj)


_cloud_pickler: Any = None


def _cloud_out_of_band() -> Any:
    """cloudpickle's pickler, sending large buffers as ``_OutOfBandPickler`` does."""
    global _cloud_pickler
    if _cloud_pickler is None:
        import cloudpickle

        class CloudOutOfBand(cloudpickle.Pickler):  # type: ignore[misc]
            def reducer_override(self, obj: Any) -> Any:
                large = _large_reduce(obj)
                return large if large is not None else super().reducer_override(obj)

        _cloud_pickler = CloudOutOfBand
    return _cloud_pickler


def mark_large_bytes(items: Sequence[Any], mode: int) -> Sequence[Any]:
    """A chunk's items with each large ``bytes`` given as an item or as an item's argument
    marked to travel out of band (the pickler cannot see bytes itself); ``items`` itself when
    there is none. Bytes deeper in an item (in a dict, in an object) travel in the pickle."""
    if mode == ONE:
        if _BYTES.isdisjoint(map(type, items)):
            return items
    elif mode == STAR:
        # Only tuples and lists are looked into: iterating another iterable could consume it.
        if not set(map(type, items)) <= {tuple, list} or _BYTES.isdisjoint(
            map(type, itertools.chain.from_iterable(items))
        ):
            return items
    elif mode != CALL or not any(
        any(map(_is_large_bytes, args)) or any(map(_is_large_bytes, kwargs.values()))
        for args, kwargs in items
    ):
        return items
    # One stand-in per object, so one that is given twice still unpickles as one object.
    marks: dict[int, Any] = {}

    def mark(obj: Any) -> Any:
        if not _is_large_bytes(obj):
            return obj
        hit = marks.get(id(obj))
        if hit is None:
            hit = marks[id(obj)] = _LargeBytes(obj)
        return hit

    if mode == ONE:
        return [mark(x) for x in items]
    if mode == STAR:
        return [type(x)(map(mark, x)) for x in items]
    return [
        (tuple(map(mark, args)), {k: mark(v) for k, v in kwargs.items()})
        for args, kwargs in items
    ]


def dumps(obj: Any, buffers: list[pickle.PickleBuffer] | None = None) -> bytes:
    """Pickle a function or arguments for a worker.

    Plain pickle first; cloudpickle for what it cannot send (lambdas, closures, local classes)
    and for ``__main__`` functions and classes, which travel by value. Not cloudpickle for
    everything: it sends a classmethod of an importable class by value (its qualname does not
    name the function), with the code's file renamed ``<dynamic-code>``, so the worker's
    traceback loses its source lines (CPython's ``test_traceback`` reads them).

    With ``buffers``, contiguous buffers of ``OUT_OF_BAND`` bytes or more (numpy arrays and
    the like, large bytes and bytearrays marked by ``mark_large_bytes`` or bound in a partial)
    are appended
    to it instead of being copied into the pickle, in the order ``loads(data, buffers=...)``
    wants them back. Nothing is copied here: the caller decides where they go.
    """
    if buffers is None:
        buf = io.BytesIO()
        try:
            _PlainPickler(buf, protocol=PROTOCOL).dump(obj)
            return buf.getvalue()
        except (_NeedsValue, pickle.PicklingError, AttributeError, TypeError):
            pass  # cloudpickle tries again, and raises the error again if it cannot do better
        import cloudpickle

        return bytes(cloudpickle.dumps(obj, protocol=PROTOCOL))
    start = len(buffers)

    def keep_in_band(pb: pickle.PickleBuffer) -> bool:
        try:
            size = pb.raw().nbytes
        except BufferError:  # not contiguous: it cannot be one segment
            return True
        if size < OUT_OF_BAND:
            return True
        buffers.append(pb)
        return False

    buf = io.BytesIO()
    try:
        _OutOfBandPickler(buf, protocol=PROTOCOL, buffer_callback=keep_in_band).dump(obj)
        return buf.getvalue()
    except (_NeedsValue, pickle.PicklingError, AttributeError, TypeError):
        del buffers[start:]  # the same buffers come again, in cloudpickle's order
    buf = io.BytesIO()
    _cloud_out_of_band()(buf, protocol=PROTOCOL, buffer_callback=keep_in_band).dump(obj)
    return buf.getvalue()


def digest(data: bytes) -> bytes:
    """A key for a pickled function: never ``id()``, which Python reuses."""
    return _blake2b(data, digest_size=16).digest()


loads = pickle.loads


def lookup_main(qualname: str) -> Any:
    """Resolve a ``__main__`` name in this process (how results refer to the parent's classes)."""
    obj: Any = sys.modules["__main__"]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _ResultPickler(pickle.Pickler):
    """Plain pickle; ``__main__`` classes and functions go back by reference to the parent's."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, _FUNCTION_TYPES)
            and _by_value(obj)
            and "<" not in obj.__qualname__
        ):
            return (lookup_main, (obj.__qualname__,))
        return NotImplemented


def dumps_result(obj: Any) -> bytes:
    """Pickle a worker's result for the parent."""
    buf = io.BytesIO()
    _ResultPickler(buf, protocol=PROTOCOL).dump(obj)
    return buf.getvalue()


class _Keep:
    """A file for the pickler that keeps what it is given rather than copying it: the pickle's
    64 KiB frames and, whole, any large bytes or buffer pickled in-band."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[Any], object]) -> None:
        self.write = write


def dumps_result_parts(
    obj: Any, out_of_band: int
) -> tuple[list[bytes | bytearray | memoryview], list[memoryview]]:
    """Pickle a worker's result without copying its large buffers: ``(parts, buffers)``.

    ``parts`` are the pickle's bytes in order (to be written one after another); ``buffers``
    are the raw memory of the buffers of ``out_of_band`` bytes or more that protocol 5 offers
    (numpy arrays, ``PickleBuffer``), to be passed as ``buffers=`` to ``pickle.loads``. Both
    point into ``obj``: write them before letting it go.
    """
    parts: list[Any] = []
    keep = _Keep(parts.append)  # a C method: a small result costs what BytesIO would
    buffers: list[memoryview] = []

    def out(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < out_of_band:
            return True  # in-band
        buffers.append(raw)
        return False

    _ResultPickler(keep, protocol=PROTOCOL, buffer_callback=out).dump(obj)
    if len(parts) > 1:  # large data was handed over whole: make every part plain bytes
        for i, part in enumerate(parts):
            if isinstance(part, pickle.PickleBuffer):
                parts[i] = part.raw()
            elif isinstance(part, memoryview) and part.obj is None:
                # Raw memory of an object the pickler may let go of once done: copy it.
                parts[i] = bytes(part)
    return parts, buffers


def rebind_to_main(fn: Any, _seen: dict[int, Any] | None = None) -> Any:
    """Give a function that arrived by value the worker's ``__main__`` namespace as its globals.

    cloudpickle gives each by-value function a fresh globals dict; without this an initializer
    that sets a global would set it in a dict no later task reads. Names the worker already has
    keep the worker's value (the initializer's), the others are filled in from what arrived.
    """
    if not isinstance(fn, types.FunctionType) or not _by_value(fn):
        return fn
    main_ns = sys.modules["__main__"].__dict__
    if fn.__globals__ is main_ns:
        return fn
    seen = {} if _seen is None else _seen
    if id(fn) in seen:
        return seen[id(fn)]
    new = types.FunctionType(
        fn.__code__, main_ns, fn.__name__, fn.__defaults__, fn.__closure__
    )
    seen[id(fn)] = new
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    new.__dict__.update(fn.__dict__)
    new.__annotations__ = fn.__annotations__
    new.__module__ = fn.__module__
    for name in fn.__code__.co_names:
        if name in fn.__globals__ and name not in main_ns:
            value = fn.__globals__[name]
            main_ns[name] = rebind_to_main(value, seen)
    return new
