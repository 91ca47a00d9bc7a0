"""System memory and swap (bytes and percent used), as psutil defines them.

On Linux both come from one read of /proc/meminfo (psutil reads it twice, plus /proc/vmstat
for swap-in/out counters we do not report); ``used`` is ``total - available`` exactly as
psutil 6+ computes it. Elsewhere, or when MemAvailable is missing or implausible (old
kernels, some containers), psutil does the work.
"""

from __future__ import annotations

import psutil

from codex_ml.monitoring.collectors import Collector, ProcFile

MEMINFO = "/proc/meminfo"
_FIELDS = (b"MemTotal", b"MemAvailable", b"SwapTotal", b"SwapFree")


def _percent(used: float, total: float) -> float:
    return round(100.0 * used / total, 1) if total > 0 else 0.0


def parse_meminfo(data: bytes | None) -> dict[str, int] | None:
    """Memory and swap from /proc/meminfo's text, or None where psutil should compute them."""
    if not data:
        return None
    kib = {}
    for line in data.splitlines():
        name, _, rest = line.partition(b":")
        if name in _FIELDS:
            kib[name] = int(rest.split()[0]) * 1024
    if len(kib) < len(_FIELDS) or not 0 < kib[b"MemAvailable"] <= kib[b"MemTotal"]:
        return None
    total, available = kib[b"MemTotal"], kib[b"MemAvailable"]
    swap_total, swap_used = kib[b"SwapTotal"], kib[b"SwapTotal"] - kib[b"SwapFree"]
    return {
        "total_bytes": total, "used_bytes": total - available, "available_bytes": available,
        "percent": _percent(total - available, total),
        "swap_total_bytes": swap_total, "swap_used_bytes": swap_used, "swap_percent": _percent(swap_used, swap_total),
    }  # fmt: skip


class MemoryCollector(Collector):
    """RAM total/used/available/percent and swap total/used/percent."""

    name = "memory"

    def __init__(self, path: str = MEMINFO) -> None:
        super().__init__()
        self._file = ProcFile(path)

    def collect(self) -> None:
        self._data = parse_meminfo(self._file.read()) or self._from_psutil()

    def stop(self) -> None:
        self._file.close()

    def _from_psutil(self) -> dict[str, float]:
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {
            "total_bytes": memory.total, "used_bytes": memory.used, "available_bytes": memory.available,
            "percent": memory.percent,
            "swap_total_bytes": swap.total, "swap_used_bytes": swap.used, "swap_percent": swap.percent,
        }  # fmt: skip
