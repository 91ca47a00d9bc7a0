"""Load averages over 1, 5 and 15 minutes (runnable + uninterruptible tasks).

On Linux from one ``pread`` of a kept /proc/loadavg descriptor (``os.getloadavg()`` opens,
reads and closes it every time); elsewhere from ``os.getloadavg()``.
"""

from __future__ import annotations

import os

from codex_ml.monitoring.collectors import Collector, ProcFile, Unavailable

LOADAVG = "/proc/loadavg"


class LoadCollector(Collector):
    """``{"1m": ..., "5m": ..., "15m": ...}``; left out where the system has no load averages."""

    name = "load"

    def __init__(self) -> None:
        super().__init__()
        self._file = ProcFile(LOADAVG)

    def start(self) -> None:
        try:
            self._read()
        except (AttributeError, OSError) as exc:
            raise Unavailable(f"no load averages ({exc})", quiet=True) from exc

    def collect(self) -> None:
        one, five, fifteen = self._read()
        self._data = {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}

    def stop(self) -> None:
        self._file.close()

    def _read(self) -> tuple[float, float, float]:
        data = self._file.read()
        if data:
            one, five, fifteen = data.split()[:3]
            return float(one), float(five), float(fifteen)
        return os.getloadavg()
