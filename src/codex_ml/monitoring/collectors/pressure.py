"""Linux pressure-stall information (PSI): how much time tasks waited for CPU, memory or I/O.

Each of /proc/pressure/{cpu,memory,io} holds lines such as
``some avg10=1.25 avg60=0.40 avg300=0.10 total=123456``: ``some`` is the share of time at
least one task was stalled, ``full`` the share all non-idle tasks were (percent, averaged
over 10 s and 60 s). Kernels without PSI (or with it disabled) have no files; the group is
then left out, without a message.
"""

from __future__ import annotations

import os

from codex_ml.monitoring.collectors import Collector, ProcFile, Unavailable

PSI_DIR = "/proc/pressure"
RESOURCES = ("cpu", "memory", "io")


def parse_pressure(text: str) -> dict[str, float]:
    """``{"some_avg10": .., "some_avg60": .., "full_avg10": .., "full_avg60": ..}`` from one file."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, fields = line.partition(" ")
        for field in fields.split():
            key, _, value = field.partition("=")
            if key in ("avg10", "avg60"):
                values[f"{kind}_{key}"] = float(value)
    return values


class PressureCollector(Collector):
    """``{"cpu": {...}, "memory": {...}, "io": {...}}`` for the PSI files that can be read."""

    name = "pressure"

    def __init__(self, root: str = PSI_DIR) -> None:
        super().__init__()
        self.root = root
        self._files: dict[str, ProcFile] = {}

    def start(self) -> None:
        self._files = {}
        for resource in RESOURCES:
            file = ProcFile(os.path.join(self.root, resource))
            if _parse(file.read()):
                self._files[resource] = file
            else:  # missing, or PSI disabled (reading gives EOPNOTSUPP)
                file.close()
        if not self._files:
            raise Unavailable("no readable /proc/pressure files", quiet=True)

    def collect(self) -> None:
        groups = {resource: _parse(file.read()) for resource, file in self._files.items()}
        self._data = {resource: values for resource, values in groups.items() if values} or None

    def stop(self) -> None:
        for file in self._files.values():
            file.close()


def _parse(data: bytes | None) -> dict[str, float]:
    try:
        return parse_pressure(data.decode("ascii")) if data else {}
    except ValueError:
        return {}
