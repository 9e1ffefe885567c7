"""How many CPUs this process may really use (affinity and cgroup quota, not the machine's)."""

from __future__ import annotations

import math
import os

__all__ = ["cpu_count"]


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota/period) limit, if any."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def cpu_count() -> int:
    """The CPUs this process may use: the smallest of the machine's count, the affinity mask and
    the cgroup quota (rounded up), and at least 1."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = _cgroup_quota()
    if quota is not None:
        counts.append(max(1, math.ceil(quota)))
    return max(1, min(counts))
