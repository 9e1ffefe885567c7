"""Thread limits for native libraries, and a description of the machine.

Imported first by ``bench.__main__``: the limits must be in the environment before numpy (or
any BLAS) is loaded, in the driver and so in every worker of every library alike.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import multiprocessing
import os
import platform
import subprocess
import sys

__all__ = [
    "LIMITED_VARS", "limit_native_threads", "load_average", "machine_info", "preload_shoal",
    "shoal_source", "usable_cores", "version_of",
]

#: Set to "1" for every library alike, so one worker uses one core.
LIMITED_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_native_threads() -> None:
    for name in LIMITED_VARS:
        os.environ[name] = "1"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def shoal_source() -> str:
    """Where the shoal under test comes from: its folder and, in a git checkout, the commit
    (and whether its sources had uncommitted changes)."""
    try:
        import shoal
    except ImportError:
        return "not installed"
    where = os.path.dirname(os.path.abspath(shoal.__file__))
    try:
        sha = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return where
    return f"{where} at commit {sha}" + (" with uncommitted changes" if dirty.strip() else "")


def preload_shoal() -> None:
    """Import every module of shoal now, in the driver. Each run's child is a fork of the
    driver, so all runs use this one snapshot of shoal even if its sources change on disk
    during a long run (a module imported lazily in a child would be read afresh)."""
    try:
        import shoal
    except ImportError:
        return
    import importlib
    import pkgutil

    for mod in pkgutil.walk_packages(shoal.__path__, "shoal."):
        if "demo" in mod.name or mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - an optional backend whose extra is absent
            continue


def machine_info() -> dict[str, str]:
    versions = {
        name: version_of(name) or "not installed"
        for name in ("shoal", "joblib", "mpire", "pebble", "numpy", "cloudpickle")
    }
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": f"{usable_cores()} usable ({os.cpu_count()} online)",
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "start method": multiprocessing.get_start_method(),
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "shoal source": shoal_source(),
        "native threads": ", ".join(f"{v}=1" for v in LIMITED_VARS),
    }


def load_average() -> str:
    """The 1-minute load average: on a shared machine, how busy it was besides us."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"
