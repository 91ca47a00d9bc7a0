"""The legacy input format: the origin toolkit's one-metric-per-line log.

Old logs hold lines such as ``{"ts": 1764336000.1, "run_id": "r1", "phase": "train",
"metric": "loss", "value": 2.31}``. The monitoring commands (inspect, export, replay) read
them by converting them here, in one place, into the loader's normal table
(``MetricsData``), decided by the shape of the file's first record (a ``metric`` and a
``value``, no ``metrics`` object). The conversion:

- series key: ``<phase>/<metric>`` (just ``<metric>`` when the phase is empty), so a train
  and a validation ``loss`` stay two series;
- step: the format has none, so a point's step is its index among the points of its
  series in file order (0, 1, 2, ...); a line that does carry an integer ``step`` keeps it;
- time: ``ts`` in seconds since the epoch, or an ISO 8601 string (UTC when it names no zone);
- ``run_id`` and ``phase`` are kept per record as extra string columns, which export writes;
- ``value``: a number or ``"NaN"``/``"Infinity"``/``"-Infinity"``.

A line that is not such a record is a bad line reported with its number, like any other
format's; a torn last line is skipped and reported. Legacy files are read line by line
(orjson), never by the columnar paths. Light to import (``runs`` sniffs with it): numpy is
imported only to load.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from codex_ml.rundir.encoding import decode_number
from codex_ml.rundir.reader import ReadReport

__all__ = ["EXTRA_COLUMNS", "FORMAT", "is_legacy_file", "is_legacy_record", "load_legacy"]

FORMAT = "legacy"
#: Per-record string columns kept from the legacy lines (export writes them after ``value``).
EXTRA_COLUMNS = ("run_id", "phase")
_SHAPE = "not a legacy metrics line (needs 'ts', 'metric' and 'value'; 'run_id' and 'phase' optional)"


def is_legacy_record(record: Any) -> bool:
    """True for a record of the legacy shape (a ``metric`` and a ``value``, no ``metrics`` object)."""
    return isinstance(record, dict) and "metric" in record and "value" in record and "metrics" not in record


def is_legacy_file(raw: bytes | Any) -> bool:
    """True when the first non-empty line of ``raw`` (the file's bytes) is a legacy record."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end == -1 else end
        line = bytes(raw[start:end])
        if line.strip():
            try:
                return is_legacy_record(orjson.loads(line))
            except orjson.JSONDecodeError:
                return False
        start = end + 1
    return False


def load_legacy(path: Path, raw: bytes | Any) -> Any:
    """A legacy file's bytes as ``MetricsData`` (loader ``"legacy"``), bad lines reported by number."""
    import numpy as np

    from codex_ml.monitoring.metrics_data import METRICS, MetricsData, Series

    report = ReadReport(str(path))
    points: dict[str, tuple[list[int], list[float], list[float], list[int]]] = {}
    extras: dict[str, list[str]] = {name: [] for name in EXTRA_COLUMNS}
    times: list[float] = []
    lines = bytes(raw).split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        parsed = parse_line(line)
        if isinstance(parsed, str):
            if index == len(lines) - 1:  # no newline after it: a write cut short by a crash
                report.torn_tail = True
            else:
                report.bad_lines.append((index + 1, parsed))
            continue
        key, when, value, step, columns = parsed
        steps, series_times, values, rows = points.setdefault(key, ([], [], [], []))
        steps.append(len(steps) if step is None else step)
        series_times.append(when)
        values.append(value)
        rows.append(len(times))
        times.append(when)
        for name in EXTRA_COLUMNS:
            extras[name].append(columns[name])
    dtypes = (np.int64, np.float64, np.float64, np.int64)
    series = {key: Series(*(np.asarray(c, dtype=dt) for c, dt in zip(cols, dtypes))) for key, cols in points.items()}
    span = (min(times), max(times)) if times else None
    extra = {"format": FORMAT, "columns": {name: np.asarray(values, dtype=object) for name, values in extras.items()}}
    return MetricsData(path, METRICS, len(times), series, report, span, loader=FORMAT, extra=extra)


def parse_line(line: bytes) -> tuple[str, float, float, int | None, dict[str, str]] | str:
    """(series key, time, value, step or None, extra columns) of one line, or why it is bad."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict) or "metrics" in record:
        return _SHAPE
    metric = record.get("metric")
    if not isinstance(metric, str) or not metric:
        return f"{_SHAPE}: 'metric' must be a non-empty string"
    if "value" not in record:
        return f"{_SHAPE}: no 'value'"
    try:
        value = float(decode_number(record["value"]))
        when = _seconds(record.get("ts"))
        columns = {name: _label(record.get(name), name) for name in EXTRA_COLUMNS}
    except ValueError as exc:
        return f"bad legacy record ({exc})"
    step = record.get("step")
    key = f"{columns['phase']}/{metric}" if columns["phase"] else metric
    return key, when, value, step if type(step) is int else None, columns


def _seconds(ts: Any) -> float:
    """``ts`` as seconds since the epoch: a number, or an ISO 8601 string (naive means UTC)."""
    if type(ts) in (int, float) and math.isfinite(ts):
        return float(ts)
    if isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"'ts' must be seconds since the epoch or an ISO 8601 time, got {ts!r}")


def _label(value: Any, name: str) -> str:
    # run_id and phase are labels: strings, ints written as text, or absent.
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise ValueError(f"'{name}' must be a string, got {value!r}")
