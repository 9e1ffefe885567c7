"""Size the CPU busy loop (``tasks.burn``) to this machine: steps per millisecond."""

from __future__ import annotations

import statistics
import time

from bench.tasks import burn

__all__ = ["steps_per_ms"]


def steps_per_ms(trials: int = 7, probe_ms: float = 20.0) -> float:
    """Median over ``trials`` of the busy loop's speed, in steps per millisecond. The median
    keeps a noisy neighbour from skewing it; each trial runs about ``probe_ms``."""
    steps = 10_000
    while True:  # grow the probe until one run takes long enough to time well
        t0 = time.perf_counter()
        burn(steps)
        elapsed = time.perf_counter() - t0
        if elapsed * 1000 >= probe_ms / 2:
            break
        steps *= 2
    rates = []
    for _ in range(trials):
        t0 = time.perf_counter()
        burn(steps)
        rates.append(steps / ((time.perf_counter() - t0) * 1000))
    return statistics.median(rates)
