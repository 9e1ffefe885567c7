"""Run by test_never_stuck.py: starts pools under every start method, reports its
descendants, then waits to be SIGKILLed."""

from __future__ import annotations

import json
import time

import psutil

import shoal


def getpid(_: object = None) -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    pools = [shoal.Pool(2, context=m) for m in ("fork", "spawn", "forkserver")]
    executor = shoal.ProcessPoolExecutor(2, mp_context="spawn")
    for p in pools:
        p.map(getpid, range(4))
    executor.submit(getpid).result()
    workers = [h.pid for p in pools for h in p._pool] + list(executor._processes)
    everyone = [c.pid for c in psutil.Process().children(recursive=True)]
    print(json.dumps({"workers": workers, "descendants": everyone}), flush=True)
    time.sleep(600)
