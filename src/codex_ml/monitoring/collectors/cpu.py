"""System CPU busy percent, in total and per core.

We keep our own previous CPU times instead of calling ``psutil.cpu_percent()``, whose
baseline is global to the process: any other caller (a profiler, a library) would reset it
between our samples. On Linux the times come from one ``pread`` of a kept /proc/stat
descriptor; elsewhere from ``psutil.cpu_times(percpu=True)``.
"""

from __future__ import annotations

from typing import Any

import psutil

from codex_ml.monitoring.collectors import Collector, ProcFile

PROC_STAT = "/proc/stat"


def parse_proc_stat(data: bytes) -> list[tuple[float, float]]:
    """``[(busy, total), ...]`` per core, in clock ticks, from /proc/stat's ``cpuN`` lines.

    Idle is idle + iowait; guest and guest_nice are left out of the total because the
    kernel already counts them in user and nice (psutil does the same).
    """
    cores = []
    for line in data.splitlines():
        if line.startswith(b"cpu") and line[3:4].isdigit():
            ticks = [int(field) for field in line.split()[1:]]
            total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal
            cores.append((total - ticks[3] - ticks[4], total))
    return cores


def _percent(busy: float, total: float) -> float:
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


class CpuCollector(Collector):
    """``{"percent": total busy %, "per_core": [busy % per logical core], "count": cores}``."""

    name = "cpu"

    def __init__(self) -> None:
        super().__init__()
        self._file = ProcFile(PROC_STAT)

    def start(self) -> None:
        self._last = self._read()

    def collect(self) -> None:
        now = self._read()
        deltas = [(b1 - b0, t1 - t0) for (b0, t0), (b1, t1) in zip(self._last, now)]
        self._last = now
        self._data = {
            "percent": _percent(sum(d[0] for d in deltas), sum(d[1] for d in deltas)),
            "per_core": [_percent(busy, total) for busy, total in deltas],
            "count": len(now),
        }

    def stop(self) -> None:
        self._file.close()

    def _read(self) -> list[tuple[float, float]]:
        data = self._file.read()
        cores = parse_proc_stat(data) if data else []
        if cores:
            return cores
        return [_busy_total(times) for times in psutil.cpu_times(percpu=True)]


def _busy_total(times: Any) -> tuple[float, float]:
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - times.idle - getattr(times, "iowait", 0.0), total
