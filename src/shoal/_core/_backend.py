"""The Backend protocol every worker kind implements, and the registry that finds one by name.

A backend runs chunks on workers and reports each item's outcome to the chunk's sink. The facades
(Pool, executors, shoal.map) are written against this protocol only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoal._core._task import Chunk
from shoal._errors import BackendUnavailable

__all__ = ["Backend", "WorkerConfig", "create_backend", "known_backends", "register_backend"]


@dataclass(frozen=True)
class WorkerConfig:
    """How a backend's workers are made."""

    max_workers: int
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    #: Replace a worker after this many tasks (None: never).
    max_tasks_per_child: int | None = None
    #: A multiprocessing context (process backend only); None: the platform's default.
    context: Any = None
    #: Start every worker at once (Pool) rather than on demand (executors).
    start_all: bool = True
    #: Under fork, with ``start_all`` off: fork the first worker in the constructor anyway
    #: (executors, whose first submission starts the workers): it is then up when the first
    #: task comes, and it forks the zygote the others come from.
    first_early: bool = False
    #: Logger that reports a failed initializer in the worker (the executors' tests read
    #: ``concurrent.futures``).
    init_logger: str = "shoal"
    #: Thread name prefix (thread backend) or worker name prefix.
    name: str = "shoal"
    #: Called with no arguments in each worker when it retires in an orderly way; what it
    #: returns goes to the backend's ``exit_results`` (None: nothing runs).
    worker_exit: Callable[[], object] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What a facade needs from a kind of worker."""

    #: "process" or "thread": decides how failures are presented.
    kind: str

    def start(self) -> None:
        """Start every worker now (the Pool facade does; executors start them on demand)."""

    def submit(self, chunk: Chunk) -> None:
        """Queue a chunk. Raises, in the caller's thread, if it cannot be sent (pickling)."""

    def shutdown(self, *, wait: bool, cancel_pending: bool) -> None:
        """Take no more chunks; run the queued ones (or drop them) and let the workers end."""

    def terminate(self) -> None:
        """Stop every worker now; queued and running chunks are reported as cancelled."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every worker has ended; True if they have."""

    def workers(self) -> Sequence[Any]:
        """Handles of the live workers (``pid``, ``is_alive()``, ``join()``, ``exitcode``)."""

    def interrupt(self) -> None:
        """Ctrl-C landed in a wait: cancel what was queued so far, stop what runs (a thread is
        abandoned); the backend stays usable."""

    def cancel_running(self, sink: Any) -> None:
        """A forced cancel: stop the worker running a task of ``sink``."""

    def statistics(self) -> Any:
        """A :class:`shoal._core._stats.Statistics` snapshot."""

    #: Observers subscribe here (:class:`shoal._core._events.EventHub`).
    events: Any

    #: What ``worker_exit`` returned in each worker that retired
    #: (:class:`shoal._core._state.ExitResults`).
    exit_results: Any

    @property
    def broken(self) -> str | None:
        """Why the backend can run nothing more (a failed initializer), or None."""


_REGISTRY: dict[str, str] = {
    "process": "shoal._backends._process:ProcessBackend",
    "thread": "shoal._backends._thread:ThreadBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register a backend as ``"module:Class"``; it is imported on first use."""
    _REGISTRY[name] = target


def known_backends() -> list[str]:
    return sorted(_REGISTRY)


def create_backend(name: str, config: WorkerConfig) -> Backend:
    """Make a backend by name, importing its module only now."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(
            f"unknown backend {name!r}; known backends: {', '.join(known_backends())}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = name
        raise BackendUnavailable(
            f"backend {name!r} needs an optional dependency: pip install 'shoal[{extra}]' ({exc})"
        ) from exc
    backend: Backend = getattr(module, cls_name)(config)
    return backend
