"""Run by test_never_stuck.py: waits inside shoal on long tasks until Ctrl-C arrives.

argv: kind (pool | executor | threadpool), where (wait | with), task-start directory,
interactive (0 | 1: after the interrupt, check the pool is still usable, as in a REPL).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import shoal


def sleeper(path: str) -> int:
    with open(os.path.join(path, f"{os.getpid()}-{time.monotonic_ns()}"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return os.getpid()


def square(x: int) -> int:
    return x * x


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def main() -> None:
    kind, where, path, interactive = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    # Act as a program started from a terminal whatever started the test run: one started in the
    # background of a non-interactive shell (`nox ... &`, some CI runners) inherits SIGINT
    # ignored, and then Python installs no KeyboardInterrupt handler and the SIGINT is lost.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if kind == "pool":
        pool: object = shoal.Pool(2)
    elif kind == "threadpool":
        pool = shoal.ThreadPool(2)
    else:
        pool = shoal.ProcessPoolExecutor(2)

    def start() -> object:
        if kind == "executor":
            futures = [pool.submit(sleeper, path) for _ in range(4)]  # type: ignore[attr-defined]
            return futures[0]
        return pool.map_async(sleeper, [path] * 4, chunksize=1)  # type: ignore[attr-defined]

    def wait(result: object) -> None:
        # "ready" comes from a timer started just before the main thread blocks in shoal's wait,
        # so the test's SIGINT lands inside that wait, not before it.
        timer = threading.Timer(0.3, lambda: say(ready=True))
        timer.daemon = True
        timer.start()
        if kind == "executor":
            result.result()  # type: ignore[attr-defined]
        else:
            result.get()  # type: ignore[attr-defined]

    try:
        if where == "with":
            with pool:  # type: ignore[attr-defined]
                wait(start())
        else:
            wait(start())
    except KeyboardInterrupt:
        say(interrupted_at=time.monotonic())
        if interactive:
            if kind == "executor":
                value = pool.submit(square, 3).result(timeout=60)  # type: ignore[attr-defined]
            else:
                value = pool.apply(square, (3,))  # type: ignore[attr-defined]
            say(usable=value == 9)
        raise


if __name__ == "__main__":
    main()
