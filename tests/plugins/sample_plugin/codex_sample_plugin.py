"""codex-sample-plugin: a codex_ml sink that writes every scalar to ``<run dir>/metrics.csv``.

Enable it with ``--sink csvsink`` (or ``start_run(..., extra_sinks=["csvsink"])``). Columns:
``kind`` (metric or system), ``step``, ``wall_time``, ``name``, ``value``.
"""

from __future__ import annotations

import csv
from typing import Any

from codex_ml.tracking.sink import MetricPoint, RunInfo, Sink

#: The codex_ml plugin API this plugin is written for.
CODEX_ML_PLUGIN_API = 1

COLUMNS = ("kind", "step", "wall_time", "name", "value")


class CsvSink(Sink):
    """Appends one CSV row per scalar to metrics.csv in the run directory."""

    name = "csvsink"

    def __init__(self, filename: str = "metrics.csv") -> None:
        self._filename = filename
        self._file: Any = None
        self._writer: Any = None

    def start(self, run: RunInfo) -> None:
        """Open the CSV file (appending on resume) and write the header once."""
        path = run.paths.root / self._filename
        fresh = not path.exists()
        self._file = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(COLUMNS)

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """One row per (step, name)."""
        self._rows("metric", points)

    def write_system(self, points: list[MetricPoint]) -> None:
        """System telemetry rows, marked as such."""
        self._rows("system", points)

    def _rows(self, kind: str, points: list[MetricPoint]) -> None:
        for step, wall_time, values in points:
            self._writer.writerows((kind, step, wall_time, name, value) for name, value in values.items())

    def flush(self) -> None:
        """Push rows to disk."""
        if self._file is not None:
            self._file.flush()

    def close(self, status: str) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
