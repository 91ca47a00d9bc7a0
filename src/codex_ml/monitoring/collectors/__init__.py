"""The collector interface: one small class per group of a system-metrics sample.

A collector is started once, then driven by the sampler thread as
``collect() -> aggregate() -> clear()`` for every sample, and stopped once. ``aggregate``
returns the group written under ``collector.name`` (None: leave the group out). A
collector that cannot run on this machine raises :class:`Unavailable` from ``start``.
Collector modules import psutil at the top, so the sampler imports them only after it
has checked that psutil is installed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any


def read_file(path: str) -> bytes | None:
    """A small procfs/sysfs file in as few reads as possible, or None if it cannot be read.

    ``os.open``/``os.read`` cost a third of ``open().read()``, which matters at 10 samples/s.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:
            chunks.append(os.read(fd, 65536))
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


class ProcFile:
    """A procfs file kept open and re-read with one ``pread`` per sample.

    Reading from offset 0 makes the kernel generate the file afresh, so a kept descriptor
    saves the open and close of every sample (two of three system calls; the first calls
    after the sampler wakes are the expensive ones). ``read`` returns None once the file
    cannot be read (for /proc/<pid>/stat: the process is gone).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> bytes | None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            data = os.pread(self._fd, 65536, 0)
            while len(data) % 65536 == 0 and data:  # a big file (many disks): read the rest
                more = os.pread(self._fd, 65536, len(data))
                if not more:
                    break
                data += more
            return data
        except OSError:
            self.close()
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Unavailable(Exception):
    """Raised by ``start`` when a collector cannot run here (no PSI files, no GPU, ...).

    ``quiet`` collectors are left out without a word; otherwise the message is printed
    once as a ``[monitoring]`` line.
    """

    def __init__(self, why: str, quiet: bool = False) -> None:
        super().__init__(why)
        self.quiet = quiet


class Collector:
    """Base class; subclasses set ``name`` and implement ``collect`` (and maybe start/stop)."""

    #: The record group this collector writes, e.g. ``"cpu"``.
    name = "collector"
    #: Prints one ``[monitoring] system-metrics: ...`` line; the sampler sets it before start().
    warn: Callable[[str], None] = staticmethod(lambda message: None)

    def __init__(self) -> None:
        self._data: Any = None

    def start(self) -> None:
        """Open resources and take baselines; raise Unavailable if this machine has none."""

    def collect(self) -> None:
        """Take one reading (called once per sample, on the sampler thread)."""
        raise NotImplementedError("each collector subclass implements collect()")

    def aggregate(self) -> Any:
        """The group's values since the last clear(), or None to leave the group out."""
        return self._data

    def clear(self) -> None:
        """Forget the readings that aggregate() has returned."""
        self._data = None

    def stop(self) -> None:
        """Release what start() opened."""


class RateCollector(Collector):
    """Turns monotonically growing counters into per-second rates since the last sample.

    The baseline is taken in ``start``, so the first sample has the rate since the logger
    started. A counter that went backwards (a reset) gives a rate of 0.
    """

    def read_counters(self) -> dict[str, float] | None:
        """The current counter values, or None when there are none (e.g. no disks)."""
        raise NotImplementedError("each rate collector subclass implements read_counters()")

    def start(self) -> None:
        counters = self.read_counters()
        if counters is None:
            raise Unavailable(f"no {self.name} counters on this machine", quiet=True)
        self._last = (time.monotonic(), counters)

    def collect(self) -> None:
        now, counters = time.monotonic(), self.read_counters()
        if counters is None:
            return
        then, last = self._last
        self._last = (now, counters)
        seconds = now - then
        if seconds > 0:
            self._data = {
                f"{key}_per_s": round(max(0.0, (value - last.get(key, value)) / seconds), 1)
                for key, value in counters.items()
            }
