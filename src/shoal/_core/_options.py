"""Per-task options both backends honour: retries, backoff, a time limit.

A facade builds one :class:`TaskOptions` per call (from its constructor's defaults and the
call's overrides) and attaches it to every chunk of that call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shoal._core._outcome import DIED, RAISED, TIMEOUT, Failure
from shoal._core._task import Chunk

__all__ = ["DEFAULT", "TaskOptions", "check_options", "parse_bytes", "settle"]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task is run again or stopped.

    Attributes:
        retries: how many more times a task may run after a failed attempt (0: never).
        retry_on: exception types that earn a retry when the task raises them; a task whose
            worker died is always retried while attempts remain.
        backoff: seconds before the first retry, doubled for each later one.
        timeout: seconds a task may run before it is stopped (``TaskTimeout``); None: no limit.
    """

    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    backoff: float = 0.0
    timeout: float | None = None

    def should_retry(self, failure: Failure, attempts_so_far: int) -> bool:
        """Whether an item that failed its ``attempts_so_far``-th attempt runs again."""
        if attempts_so_far > self.retries:
            return False
        if failure.kind == DIED:
            return True
        if failure.kind in (RAISED, TIMEOUT) and self.retry_on:
            return isinstance(failure.exc, self.retry_on)
        return False

    def delay(self, attempts_so_far: int) -> float:
        """Seconds to wait before the next attempt."""
        if self.backoff <= 0:
            return 0.0
        return float(self.backoff * 2 ** (attempts_so_far - 1))


DEFAULT = TaskOptions()


def check_options(
    *,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    backoff: float = 0.0,
    task_timeout: float | None = None,
) -> TaskOptions:
    """Validate user-given options; a ValueError/TypeError names the problem and the fix."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not isinstance(retry_on, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        raise TypeError(
            f"retry_on must be an exception class or a tuple of them, not {retry_on!r}"
        )
    if not isinstance(backoff, int | float) or backoff < 0 or math.isnan(backoff):
        raise ValueError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
    if task_timeout is not None and (
        not isinstance(task_timeout, int | float)
        or isinstance(task_timeout, bool)
        or math.isnan(task_timeout)
        or task_timeout <= 0
    ):
        raise ValueError(
            f"task_timeout must be a positive number of seconds or None, not {task_timeout!r}"
        )
    if not retries and not retry_on and not backoff and task_timeout is None:
        return DEFAULT
    return TaskOptions(retries, retry_on, float(backoff), task_timeout)


def settle(chunk: Chunk, pos: int, failure: Failure) -> tuple[Chunk | None, float]:
    """Decide what happens to a failed item: run again (returns the retry chunk and the delay
    before it) or fail for good (returns None; the failure carries the earlier attempts)."""
    opts = chunk.opts if chunk.opts is not None else DEFAULT
    attempts = chunk.attempts(pos)
    earlier = chunk.history.get(pos) if chunk.history else None
    if opts.should_retry(failure, attempts):
        retry = chunk.subset([pos])
        retry.history = {0: [*(earlier or ()), failure.describe()]}
        return retry, opts.delay(attempts)
    failure.history = earlier
    return None, 0.0


_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}


def parse_bytes(value: int | str | None, what: str = "max_memory_per_worker") -> int | None:
    """``2_000_000_000``, ``"2GB"``, ``"1.5 GiB"`` -> bytes; None stays None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{what} must be a positive number of bytes, not {value!r}")
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace("_", "")
        number = text.rstrip("kmgtib ")
        unit = text[len(number):].strip()
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
        if unit in _UNITS and amount > 0:
            return int(amount * _UNITS[unit])
    raise ValueError(
        f"{what} must be a positive number of bytes or a size such as '2GB' or '512MiB', "
        f"not {value!r}"
    )
