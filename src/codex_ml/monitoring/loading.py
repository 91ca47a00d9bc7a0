"""Fast columnar loading of metrics NDJSON: one numpy array set per metric.

The fastest path is DuckDB's reader (``codex_ml.monitoring.duckdb_loading``), for complete
files it can vouch for. The next one hands the whole file to ``pyarrow.json.read_json`` (multi-threaded C++),
after cutting a torn last line off and swapping the non-finite spellings (``"NaN"``,
``"Infinity"``, ``"-Infinity"``, see docs/run-directory.md) for sentinel numbers that are
swapped back afterwards: pyarrow cannot read a column holding both numbers and strings.
Any file the fast path cannot take (a bad line, an unexpected type, pyarrow missing, a
sentinel already present) is read by the slow path, one ``orjson.loads`` per line, which
reports bad lines with their numbers, as ``codex_ml.rundir.reader`` does.

The format is decided here, from the first record: a file in the origin toolkit's legacy
shape (one metric per line) is converted by ``codex_ml.monitoring.legacy_format`` into
the same ``MetricsData``, with its ``run_id``/``phase`` as extra columns.
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from codex_ml.monitoring.duckdb_loading import load_with_duckdb
from codex_ml.monitoring.json_marks import Marks, keys_with_values
from codex_ml.monitoring.legacy_format import is_legacy_file, load_legacy
from codex_ml.monitoring.metrics_data import INF_SENTINEL, NAN_SENTINEL, MetricsData, Series, count_marks_in_blocks, drop_superseded, from_table
from codex_ml.monitoring.metrics_data import time_span as _span
from codex_ml.monitoring.runs import METRICS, SYSTEM, EmptyInputError
from codex_ml.rundir.encoding import decode_number
from codex_ml.rundir.reader import ReadReport, iter_records
from codex_ml.rundir.rewinds import rewinds_beside

# Same-length replacement numbers for the non-finite spellings, so the swap happens in
# place (in a copy-on-write map of the file: no copy of a 100 MB file). The quote before the
# spelling can only open a JSON string value (a quote inside a key is escaped), and metric
# values are numbers or these spellings, so the swap touches nothing else. JSON allows the
# spaces after a number. A file that already holds a sentinel number is caught after the
# parse (more sentinels than swaps) and read by the slow path, so the swap back is exact.
_NAN_SENTINEL, _INF_SENTINEL = NAN_SENTINEL, INF_SENTINEL
_SWAPS = ((b':"NaN"', b":7e307"), (b':"Infinity"', b":8e307     "), (b':"-Infinity"', b":-8e307     "))
#: pyarrow's default 1 MiB blocks make many small parse tasks; 4 MiB parses faster here.
_BLOCK_SIZE = 4 << 20
#: Large files are swapped and parsed in up to this many pieces of at least _MIN_PIECE bytes.
_PIECES, _MIN_PIECE = 8, 8 << 20

def load(path: str | Path, kind: str = METRICS, *, rewound: bool = False) -> MetricsData:
    """Load a metrics (``kind="metrics"``) or system-metrics (``"system"``) NDJSON file."""
    path = Path(path)
    data = load_system(path) if kind == SYSTEM else load_metrics(path, rewound=rewound)
    if data.records == 0 and not data.report.bad_lines:
        raise EmptyInputError(path)
    return data


def load_metrics(path: str | Path, *, rewound: bool = False) -> MetricsData:
    """A metrics.ndjson file: the pyarrow path when it can, else the per-line path.

    When the run (the file's folder) holds rewinds in its events.ndjson, the points a rollback
    superseded are left out, so every reader shows each step once (``rewound=True`` keeps them).
    Without rewinds this costs one failed open of events.ndjson, or one read of a small file.
    """
    path = Path(path)
    data = _load_metrics(path)
    if rewound or data.loader == "legacy":  # a legacy log's steps are per-metric indexes, not training steps
        return data
    rewinds = rewinds_beside(path)
    return drop_superseded(data, rewinds) if rewinds else data


def _load_metrics(path: Path) -> MetricsData:
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return load_lines(path, b"")
        # Copy-on-write: pages are read lazily and only swapped pages are copied.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
            if is_legacy_file(mapped):  # the origin toolkit's one-metric-per-line log
                return load_legacy(path, mapped)
            fast = load_with_duckdb(path, mapped)
            if fast is None:
                try:
                    fast = _load_fast(path, mapped)
                except ImportError:
                    fast = None
    return fast if fast is not None else load_lines(path, path.read_bytes())


# -- fast path ----------------------------------------------------------------------
def _load_fast(path: Path, raw: Any) -> MetricsData | None:
    import pyarrow as pa
    import pyarrow.json as pj

    report = ReadReport(str(path))
    cut = raw.rfind(b"\n") + 1
    tail_record = _parse_tail(bytes(raw[cut:]), report)
    if not cut:
        return None
    # The swap keeps every ':' where it is, so they can be counted while it runs.
    marks = Marks()
    counter = threading.Thread(target=count_marks_in_blocks, args=(raw, cut, marks, False))
    counter.start()
    try:
        table, swaps = _parse_pieces(raw, cut)
    finally:
        counter.join()
    if table is None:
        return None  # a bad line or mixed types (e.g. another string value): the slow path says where
    unswapped = [0]
    data = from_table(path, table, swaps > 0, report, unswapped)
    if data is not None and unswapped[0] != swaps:
        return None  # the file held a sentinel number of its own: only the slow path is exact
    if data is not None and marks.colons != keys_with_values(table, data.series):
        return None  # a null, a repeated key or a nested object: the slow path names the line
    if data is not None and tail_record is not None:
        _append_record(data, tail_record)
    return data


def _parse_pieces(raw: Any, end: int) -> tuple[Any, int]:
    """Swap and parse ``raw[:end]`` in newline-aligned pieces; returns (table or None, swaps).

    pyarrow parses a piece on a worker thread without the GIL while this thread swaps the
    non-finite spellings of the next piece, so the swap costs (almost) no wall time.
    """
    import pyarrow as pa
    import pyarrow.json as pj
    from concurrent.futures import ThreadPoolExecutor

    pieces = max(1, min(_PIECES, end // _MIN_PIECE))
    bounds = sorted({0, end, *(raw.find(b"\n", end * i // pieces, end) + 1 for i in range(1, pieces))})
    options = pj.ReadOptions(block_size=_BLOCK_SIZE)
    views, futures, swaps = [], [], 0
    with ThreadPoolExecutor(max_workers=len(bounds) - 1) as pool:
        for start, stop in zip(bounds, bounds[1:]):
            swaps += _swap_non_finite(raw, start, stop)
            views.append(memoryview(raw)[start:stop])
            futures.append(pool.submit(lambda view: pj.read_json(pa.BufferReader(pa.py_buffer(view)), read_options=options), views[-1]))
        try:
            tables = [future.result() for future in futures]
            # Pieces may have seen different metrics (or ints in one, floats in another): unify.
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # Not JSON, or a column pyarrow cannot type (a number in one row or piece, a string
            # in another): the caller reads the file line by line, which names the bad lines.
            table = None
    del futures
    for view in views:
        view.release()  # the map can close only once no view is left
    return table, swaps


def _swap_non_finite(raw: Any, begin: int, end: int) -> int:
    """Swap every non-finite spelling in ``raw[begin:end]`` for its sentinel, in place; returns how many."""
    # Two searches, for 'NaN"' and 'Infinity"' (which also ends '-Infinity"'): a long needle
    # lets the search skip ahead, far faster than stopping at every ':"'. A hit counts only
    # when the value's opening ':"' (or ':"-') is right before it.
    swaps = 0
    for needle in (b'NaN"', b'Infinity"'):
        pos = raw.find(needle, begin, end)
        while pos != -1:
            for spelling, number in _SWAPS:
                start = pos + len(needle) - len(spelling)
                if start >= begin and raw[start : pos + len(needle)] == spelling:
                    raw[start : start + len(spelling)] = number
                    swaps += 1
                    break
            pos = raw.find(needle, pos + len(needle), end)
    return swaps


def _parse_tail(tail: bytes, report: ReadReport) -> dict[str, Any] | None:
    # A last line without a newline counts if it parses (the reader's rule), else it is torn.
    if not tail.strip():
        return None
    try:
        record = orjson.loads(tail)
    except orjson.JSONDecodeError:
        report.torn_tail = True
        return None
    if not isinstance(record, dict):
        report.torn_tail = True
        return None
    return record


def _append_record(data: MetricsData, record: dict[str, Any]) -> None:
    """Add one record (the complete last line that lacked its newline) to loaded data."""
    try:
        step, when = int(record["step"]), float(record["time"])
        metrics = {k: float(decode_number(v)) for k, v in record.get("metrics", {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        data.report.bad_lines.append((data.records + 1, f"bad record ({exc})"))
        return
    row = data.records
    for key, value in metrics.items():
        old = data.series.get(key) or Series(*(np.empty(0, dt) for dt in (np.int64, np.float64, np.float64, np.int64)))
        data.series[key] = Series(np.append(old.steps, step), np.append(old.times, when),
                                  np.append(old.values, value), np.append(old.rows, row))  # fmt: skip
    data.records += 1
    span = data.time_span or (when, when)
    data.time_span = (min(span[0], when), max(span[1], when))


# -- slow path ----------------------------------------------------------------------
class _Columns:
    """Growing per-key Python lists, turned into numpy arrays at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, tuple[list[int], list[float], list[float], list[int]]] = {}
        self.times: list[float] = []
        self.records = 0

    def add(self, step: int, when: float, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            col = self.cols.get(key)
            if col is None:
                col = self.cols[key] = ([], [], [], [])
            col[0].append(step)
            col[1].append(when)
            col[2].append(value)
            col[3].append(self.records)
        self.times.append(when)
        self.records += 1

    def series(self) -> dict[str, Series]:
        dtypes = (np.int64, np.float64, np.float64, np.int64)
        return {k: Series(*(np.asarray(c, dtype=dt) for c, dt in zip(col, dtypes))) for k, col in self.cols.items()}


def load_lines(path: Path, raw: bytes | bytearray) -> MetricsData:
    """Parse ``raw`` (the bytes of ``path``, or a tail of them) line by line: the reader that reports
    bad and torn lines with their numbers; the fast paths hand it what they cannot prove exact."""
    report = ReadReport(str(path))
    columns = _Columns()
    lines = raw.split(b"\n")
    last = len(lines) - 1  # the piece after the final newline ('' for a clean file)
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        parsed = _parse_metrics_line(line)
        if isinstance(parsed, str):
            if index == last:
                report.torn_tail = True
            else:
                report.bad_lines.append((index + 1, parsed))
            continue
        columns.add(*parsed)
    times = np.asarray(columns.times, dtype=np.float64)
    return MetricsData(path, METRICS, columns.records, columns.series(), report, _span(times))


def _parse_metrics_line(line: bytes) -> tuple[int, float, dict[str, float]] | str:
    """(step, time, metrics) of one line, or why it is not a metrics record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict):
        return "not a JSON object"
    step, when, metrics = record.get("step"), record.get("time"), record.get("metrics")
    if type(step) is not int or not isinstance(when, (int, float)) or not isinstance(metrics, dict):
        return "not a metrics record (needs an integer 'step', a number 'time' and a 'metrics' object)"
    try:
        values = {k: float(decode_number(v)) for k, v in metrics.items()}
    except ValueError as exc:
        return f"bad metric value ({exc})"
    return step, float(when), values


# -- system metrics -----------------------------------------------------------------
def load_system(path: str | Path) -> MetricsData:
    """A system_metrics.jsonl file as ``system/<group>/<field>`` series on the sample axis.

    These files hold one line per sampling interval (small), so the reader's per-line path
    is fast enough.
    """
    from codex_ml.monitoring.system_metrics import flatten_sample

    path = Path(path)
    report = ReadReport(str(path))
    columns = _Columns()
    for record in iter_records(path, report):
        sample, when = record.get("sample"), record.get("time")
        if not isinstance(sample, int) or not isinstance(when, (int, float)):
            continue  # not a sample: unknown records are ignored, as the schema says
        columns.add(sample, float(when), flatten_sample(record))
    times = np.asarray(columns.times, dtype=np.float64)
    return MetricsData(path, SYSTEM, columns.records, columns.series(), report, _span(times))
