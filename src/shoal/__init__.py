"""shoal: parallel work on processes and threads that never gets stuck.

Drop-in for ``multiprocessing.Pool`` (:class:`Pool`, :class:`ThreadPool`) and
``concurrent.futures`` (:class:`ProcessPoolExecutor`, :class:`ThreadPoolExecutor`), plus
:func:`map` for one-call use.
"""

from shoal._core._backend import known_backends, register_backend
from shoal._core._cpu import cpu_count
from shoal._core._future import Future
from shoal._core._state import worker_state
from shoal._errors import (
    BackendUnavailable,
    EncodingError,
    PoolBroken,
    ShoalError,
    TaskTimeout,
    ThreadPoolBroken,
    TransportError,
    WorkerDied,
)
from shoal._executor import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from shoal._map import map
from shoal._pool import ApplyResult, AsyncResult, IMapIterator, MapResult, Pool, ThreadPool

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "BackendUnavailable",
    "EncodingError",
    "Executor",
    "Future",
    "IMapIterator",
    "MapResult",
    "Pool",
    "PoolBroken",
    "ProcessPoolExecutor",
    "ShoalError",
    "TaskTimeout",
    "ThreadPool",
    "ThreadPoolBroken",
    "ThreadPoolExecutor",
    "TransportError",
    "WorkerDied",
    "cpu_count",
    "known_backends",
    "map",
    "register_backend",
    "worker_state",
]

__version__ = "0.1.0"

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("shoal."):
        try:
            _obj.__module__ = "shoal"
        except (AttributeError, TypeError):
            pass
del _name, _obj
