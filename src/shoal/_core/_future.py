"""shoal's Future: a real ``concurrent.futures.Future`` that is also awaitable."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import Any

from shoal._core._callbacks import CallbackRunner, in_internal_thread

__all__ = ["Future"]


class Future(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` that works with ``await`` and ``asyncio.wrap_future``.

    Done-callbacks triggered on one of shoal's own threads run on the pool's callback thread, so a
    callback that waits on the pool cannot block it.
    """

    _runner: CallbackRunner | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    def _invoke_callbacks(self) -> None:
        runner = self._runner
        if runner is not None and self._done_callbacks and in_internal_thread():
            runner.post(super()._invoke_callbacks)  # type: ignore[misc]
        else:
            super()._invoke_callbacks()  # type: ignore[misc]
