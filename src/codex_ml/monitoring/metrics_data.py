"""What a metrics or system-metrics file loads into (``MetricsData``: one ``Series`` per metric),
the pyarrow reader's step from an Arrow table to MetricsData, and what both columnar readers
(pyarrow and DuckDB) share: Arrow buffers read as numpy, the ``:``/``"`` count in blocks.

Its own module so that the readers (``loading``, ``duckdb_loading``, ``legacy_format``) and the
tools all import it and none of them imports another reader back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.rundir.reader import ReadReport

#: The two kinds of file: training metrics (``metrics.ndjson``) and system samples.
METRICS, SYSTEM = "metrics", "system"
#: The sentinel numbers the pyarrow path swaps in for "NaN" and "±Infinity" (see loading.py).
NAN_SENTINEL, INF_SENTINEL = 7e307, 8e307


@dataclass
class Series:
    """One metric's points in file order: step, wall time, value and record number."""

    steps: np.ndarray
    times: np.ndarray
    values: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class MetricsData:
    """Every metric of one NDJSON file, plus what could not be read."""

    path: Path
    kind: str
    records: int
    series: dict[str, Series]
    report: ReadReport
    #: The first and last wall time of any record (None for an empty file).
    time_span: tuple[float, float] | None = None
    #: Which reader produced it: "duckdb", "pyarrow", "lines" (one orjson.loads per line) or "legacy".
    loader: str = "lines"
    #: ``format`` ("legacy" for the origin toolkit's lines) and ``columns``: per-record string
    #: columns (name -> array indexed by record number) that export writes after the values.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Records left out because a rollback superseded them (``drop_superseded``); ``records``
    #: still counts every line, so ``Series.rows`` keep numbering the file's records.
    superseded: int = 0

    @property
    def extra_columns(self) -> dict[str, np.ndarray]:
        """Per-record string columns beyond step/time/metrics (legacy ``run_id``, ``phase``)."""
        return self.extra.get("columns", {})

    @property
    def fast_path(self) -> bool:
        """True when a columnar reader (DuckDB or pyarrow) read the file."""
        return self.loader != "lines"

    def keys(self) -> list[str]:
        """Metric names in order of first appearance."""
        return list(self.series)


def from_table(path: Path, table: Any, swapped: bool, report: ReadReport, unswapped: list[int],
                loader: str = "pyarrow") -> MetricsData | None:
    """``MetricsData`` from an Arrow table of ``step, time, metrics{...}`` (None when it is not one).

    Columns are read into numpy through their buffers (``numeric_values``), not pyarrow's
    ``to_numpy``/``cast``: those import pandas and pyarrow.compute, ~0.2 s of a cold command.
    """
    import pyarrow as pa

    names = table.column_names
    if "metrics" not in names or "step" not in names or "time" not in names:
        return None
    steps_col, times_col = table.column("step"), table.column("time")
    if steps_col.null_count or times_col.null_count or not pa.types.is_integer(steps_col.type):
        return None
    metrics_col = table.column("metrics")
    if not pa.types.is_struct(metrics_col.type) or metrics_col.null_count:
        return None  # a record without a metrics object is a bad line: the slow path names it
    steps_got, times_got = numeric_values(_one_chunk(steps_col)), numeric_values(_one_chunk(times_col))
    if steps_got is None or times_got is None:
        return None
    steps, times = steps_got[0].astype(np.int64, copy=False), times_got[0].astype(np.float64, copy=False)
    # One chunk (every block shares the unified schema), so each metric is one flat array.
    metrics = _one_chunk(metrics_col)
    series: dict[str, Series] = {}
    for child_field, child in zip(metrics.type, metrics.flatten()):
        got = _child_values(child, swapped, unswapped)
        if got is None:
            return None
        rows, values = got
        dense = len(rows) == len(steps)  # in every record: share the step and time arrays
        series[child_field.name] = Series(steps if dense else steps[rows], times if dense else times[rows], values, rows)
    return MetricsData(path, METRICS, len(table), series, report, time_span(times), loader=loader)


def _one_chunk(column: Any) -> Any:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


#: Arrow primitive types whose data buffer numpy reads as is.
_NUMPY_DTYPES = {
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "halffloat": np.float16, "float": np.float32, "double": np.float64,
}  # fmt: skip


def numeric_values(array: Any) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(values, validity mask or None when no value is null) of a numeric Arrow ``Array``, read
    zero-copy from its buffers; None for any other type. Null slots hold undefined values."""
    dtype = _NUMPY_DTYPES.get(str(array.type))
    if dtype is None:
        return None
    end = array.offset + len(array)
    if len(array) == 0:
        return np.empty(0, dtype), None
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype, count=end)[array.offset :]
    if not array.null_count:
        return values, None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=end, bitorder="little")
    return values, bits[array.offset :].astype(bool)


def _child_values(child: Any, swapped: bool, unswapped: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    got = numeric_values(child)
    if got is None:
        return None  # strings other than the non-finite spellings, booleans, objects
    values, valid = got
    if valid is not None:
        rows = np.flatnonzero(valid)
        values = values[rows]
    else:
        rows = np.arange(len(child), dtype=np.int64)
    values = values.astype(np.float64, copy=False)
    if swapped:
        values, count = _unswap(values)
        unswapped[0] += count
    return rows.astype(np.int64, copy=False), values


def _unswap(values: np.ndarray) -> tuple[np.ndarray, int]:
    if not (np.abs(values) >= NAN_SENTINEL).any():
        return values, 0  # the usual column: no sentinel, nothing to copy
    values = np.array(values, dtype=np.float64, copy=True)
    count = 0
    for sentinel, original in ((NAN_SENTINEL, math.nan), (INF_SENTINEL, math.inf), (-INF_SENTINEL, -math.inf)):
        hits = values == sentinel
        count += int(hits.sum())
        values[hits] = original
    return values, count


def time_span(times: np.ndarray) -> tuple[float, float] | None:
    """The first and last wall time (None for no records)."""
    return (float(times.min()), float(times.max())) if len(times) else None


def drop_superseded(data: MetricsData, rewinds: list[Any]) -> MetricsData:
    """Keep only the surviving timeline: drop every point a rewind superseded (a point logged
    before the rewind's time at a step past its checkpoint; ``codex_ml.rundir.rewinds``)."""
    from codex_ml.rundir.rewinds import surviving_mask

    dropped_rows = []
    for key, series in data.series.items():
        keep = surviving_mask(series.steps, series.times, rewinds)
        if keep.all():
            continue
        dropped_rows.append(series.rows[~keep])
        data.series[key] = Series(series.steps[keep], series.times[keep], series.values[keep], series.rows[keep])
    # A record's points share its step and time, so they are dropped together: count records once.
    data.superseded = int(np.unique(np.concatenate(dropped_rows)).size) if dropped_rows else 0
    return data


def logged_before(data: MetricsData, before: float) -> MetricsData:
    """Keep only the points logged before wall time ``before`` (in place; returns ``data``).

    A resume's back-fill in a sink process runs while the new session already appends to the
    same file: the session's start time separates what earlier sessions logged (to back-fill)
    from what the session's own sink delivers.
    """
    for key, series in data.series.items():
        keep = series.times < before
        if not keep.all():
            data.series[key] = Series(series.steps[keep], series.times[keep], series.values[keep], series.rows[keep])
    return data


#: Block size for counting marks: its comparison temporaries stay in the CPU cache.
_MARK_BLOCK = 1 << 20


def count_marks_in_blocks(raw: Any, end: int, marks: Any, quotes: bool = True) -> None:
    """``json_marks.count_marks`` over ``raw[:end]``, one 1 MiB block at a time (a thread target).

    Counting the whole file at once builds a file-sized temporary per mark (100 MB of fresh
    pages for a 1M-record file): 75-95 ms, a third of it in the kernel, against ~35 ms here.
    """
    from codex_ml.monitoring.json_marks import Marks, count_marks

    colons = quote_count = 0
    with memoryview(raw) as whole:
        for begin in range(0, end, _MARK_BLOCK):
            block = Marks()
            with whole[begin : min(end, begin + _MARK_BLOCK)] as part:
                count_marks(part, len(part), block, quotes)
            colons += block.colons or 0
            quote_count += block.quotes or 0
    marks.colons = colons
    if quotes:
        marks.quotes = quote_count
