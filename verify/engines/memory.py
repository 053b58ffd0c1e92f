"""Memory as a resource of the worker pool: what the machine has free, what a worker may still
grow to. A FaceNet build peaks near 7.5 GB, so on a 24 GB machine three at once would be killed
by the kernel; a worker that would not fit waits for a running one to finish instead."""
from __future__ import annotations

import json
import os
import resource
from collections.abc import Iterable
from pathlib import Path

from core.artifacts import write_json_atomic

GB = 1024 ** 3


def _proc_kb_gb(path: str, field: str) -> float | None:
    """A "<field>: <n> kB" line of a /proc file, in GB (None when the file or the field is missing)."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def available_gb() -> float:
    """Memory the kernel can give without swapping (MemAvailable), in GB."""
    found = _proc_kb_gb("/proc/meminfo", "MemAvailable")
    return found if found is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GB


def rss_gb(pid: int) -> float:
    """Resident memory of a live process (0 when it is gone or unreadable)."""
    return _proc_kb_gb(f"/proc/{pid}/status", "VmRSS") or 0.0


def peak_rss_gb() -> float:
    """This process's peak resident memory so far. VmHWM first: a spawned worker's ru_maxrss starts
    at its parent's peak (fork copies it, exec keeps it), so it would report the parent's."""
    found = _proc_kb_gb("/proc/self/status", "VmHWM")
    return found if found is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # kB


def workers_that_fit(workers: int, peak_gb: float | None, free_gb: float | None = None) -> int:
    """At most `workers`, and no more than the free memory holds at `peak_gb` each (at least 1)."""
    if not peak_gb:
        return workers
    free = available_gb() if free_gb is None else free_gb
    return max(1, min(workers, int(free // peak_gb)))


def fits(peak_gb: float | None, running_pids: Iterable[int]) -> bool:
    """Would one more worker of `peak_gb` fit beside the running ones, each of which may still grow
    to `peak_gb`? Free memory minus what they have yet to take must hold a whole new peak."""
    if not peak_gb:
        return True
    still_to_take = sum(max(0.0, peak_gb - rss_gb(pid)) for pid in running_pids)
    return available_gb() - still_to_take >= peak_gb


def recorded_peak_gb(path: Path, key: str) -> float | None:
    """The peak a worker of this model (`key`: its content key) was measured at before, if any."""
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get(key)
    return float(value) if value else None


def record_peak_gb(path: Path, key: str, peaks: list[float]) -> None:
    """Keep the largest peak measured for a worker of this model, for sizing the next run's pool."""
    if not peaks:
        return
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[key] = round(max([*peaks, known.get(key, 0.0)]), 2)
    write_json_atomic(path, known)
