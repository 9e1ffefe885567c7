"""How the facades attach observers (``trace=``, ``progress=``) without depending on their
optional libraries until asked."""

from __future__ import annotations

from typing import Any

from shoal._core import _relay

__all__ = ["attach_trace", "make_progress"]


def attach_trace(backend: Any, trace: Any) -> Any:
    """Subscribe a Timeline to ``backend``'s events: ``trace=True`` makes a new one, an object
    with ``task_done`` is used as it is. Returns it (or None)."""
    if trace is None or trace is False:
        return None
    if trace is True:
        from shoal.observe.timeline import Timeline

        trace = Timeline()
    if not callable(getattr(trace, "task_done", None)):
        raise TypeError(
            f"trace must be True, False or a Timeline (an object with task_done()), not {trace!r}"
        )
    backend.events.add(trace)
    return trace


def make_progress(progress: Any, total: int | None, name: str) -> Any:
    """A progress bar for a map-like call: ``True``, a title, or a ready-made bar."""
    if progress is None or progress is False:
        return None
    if callable(getattr(progress, "update", None)) and callable(getattr(progress, "close", None)):
        return progress
    desc = progress if isinstance(progress, str) else name
    # Inside a process worker a bar would draw into a pipe the parent forwards line by line:
    # the counts go to the parent instead, which draws them (see _core/_relay.py).
    remote = _relay.remote_bar(total, desc)
    if remote is not None:
        bar: Any = remote
    else:
        from shoal.observe.progress import ProgressBar

        bar = ProgressBar(total=total, desc=desc)
    if total == 0:
        bar.close()
    return bar


def _nested_bar(desc: str, total: int | None, began: float, outer: Any) -> Any:
    """The parent's line for a map-like call run inside one of its workers."""
    from shoal.observe.progress import ProgressBar

    return ProgressBar.nested(desc, total, began, outer)


_relay.set_display(_nested_bar)
