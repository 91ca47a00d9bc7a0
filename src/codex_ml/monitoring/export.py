"""``codex-ml monitoring export``: a run's metrics as CSV, Parquet or JSONL, long or wide.

Long: one row per metric point (``step, time, key, value``) in file order. Wide: one row
per step (ascending), one column per metric, an empty cell where a metric was not logged
at that step (when a step was logged twice, the later value wins); ``time`` is the latest
wall time of the step. Non-finite values stay non-finite: Parquet stores them as floats,
CSV as ``nan``/``inf``/``-inf``, JSONL as ``"NaN"``/``"Infinity"``/``"-Infinity"`` (the
codex_ml NDJSON spelling). pyarrow (extra ``export``) writes CSV and Parquet.

Per-record string columns of the input (``run_id`` and ``phase`` of a legacy file, see
``legacy_format``) follow ``value`` in the long layout; in the wide one they follow
``time`` and hold the values of the step's last record in file order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.errors import MissingExtraError
from codex_ml.monitoring.loading import MetricsData
from codex_ml.monitoring.runs import UnknownFormatError

FORMATS = ("csv", "parquet", "jsonl")
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def pick_format(fmt: str | None, out: Path) -> str:
    """The explicit format, else the one the output suffix names; unknown ones list the choices."""
    if fmt:
        if fmt.lower() not in FORMATS:
            raise UnknownFormatError("export format", fmt, FORMATS)
        return fmt.lower()
    guess = _SUFFIXES.get(out.suffix.lower())
    if guess is None:
        raise UnknownFormatError("export format (from the file suffix)", out.suffix or out.name, FORMATS)
    return guess


def long_columns(data: MetricsData, with_rows: bool = True) -> dict[str, Any]:
    """numpy columns ``step, time, key (codes), value, row`` (record number) in file order, plus the key names.

    ``row`` is only needed for the per-record string columns of a legacy file; ``with_rows=False``
    leaves it out (None): one file-sized array less to fill, ~10 % of this function's time cold.
    """
    keys = data.keys()
    if not keys:
        empty = np.empty(0)
        return {"step": empty.astype(np.int64), "time": empty, "code": empty.astype(np.int32), "value": empty,
                "row": empty.astype(np.int64) if with_rows else None, "keys": keys}  # fmt: skip
    # Each point goes straight to its place: the points of the records before its own, then
    # those of its record with an earlier key (first-appearance order). Linear, and ~6x faster
    # on 1M records than a records x keys grid or a stable sort on the record number (_long_by_sort).
    counts = np.bincount(np.concatenate([data.series[k].rows for k in keys]), minlength=data.records)
    start = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    placed = np.zeros(len(counts), dtype=np.int64)  # points of each record placed so far
    total = int(counts.sum())
    out = {"step": np.empty(total, np.int64), "time": np.empty(total), "code": np.empty(total, np.int32),
           "value": np.empty(total), "row": np.empty(total, np.int64) if with_rows else None}  # fmt: skip
    for code, key in enumerate(keys):
        series = data.series[key]
        rows = series.rows  # unique within a key: a record holds a key once
        at = start[rows] + placed[rows]
        placed[rows] += 1
        out["step"][at], out["time"][at], out["value"][at] = series.steps, series.times, series.values
        out["code"][at] = code
        if with_rows:
            out["row"][at] = rows
    if int(placed.sum()) != total:  # a key twice in one record (no reader makes that): sort instead
        return {**_long_by_sort(data, keys), **({} if with_rows else {"row": None})}
    return {**out, "keys": keys}


def _long_by_sort(data: MetricsData, keys: list[str]) -> dict[str, Any]:
    rows = np.concatenate([data.series[k].rows for k in keys])
    # Points were grouped by key; a stable sort on the record number restores file order
    # and keeps first-appearance key order within a record.
    order = np.argsort(rows, kind="stable")
    return {
        "step": np.concatenate([data.series[k].steps for k in keys])[order],
        "time": np.concatenate([data.series[k].times for k in keys])[order],
        "code": np.concatenate([np.full(len(data.series[k]), i, dtype=np.int32) for i, k in enumerate(keys)])[order],
        "value": np.concatenate([data.series[k].values for k in keys])[order],
        "row": rows[order],
        "keys": keys,
    }


def wide_columns(data: MetricsData) -> dict[str, Any]:
    """``step``, ``time``, the input's extra string columns (values of each step's last record)
    and one (values, present-mask) pair per metric, one row per step."""
    keys = data.keys()
    all_steps = np.concatenate([data.series[k].steps for k in keys]) if keys else np.empty(0, np.int64)
    steps = np.unique(all_steps)
    times = np.full(len(steps), -np.inf)
    last_row = np.full(len(steps), -1, dtype=np.int64)
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in keys:
        series = data.series[key]
        index = np.searchsorted(steps, series.steps)
        values = np.zeros(len(steps))
        present = np.zeros(len(steps), dtype=bool)
        values[index] = series.values  # in file order, so a repeated step keeps its later value
        present[index] = True
        np.maximum.at(times, index, series.times)
        np.maximum.at(last_row, index, series.rows)
        columns[key] = (values, present)
    extras = {name: labels[last_row] for name, labels in data.extra_columns.items()}
    return {"step": steps, "time": times, "extras": extras, "columns": columns}


def to_arrow(data: MetricsData, wide: bool) -> Any:
    """A pyarrow Table of the long or wide layout."""
    pa = _pyarrow()
    if wide:
        cols = wide_columns(data)
        arrays = {"step": _arrow(pa, cols["step"]), "time": _arrow(pa, cols["time"])}
        arrays.update((name, pa.array(labels, pa.string())) for name, labels in cols["extras"].items())
        for key, (values, present) in cols["columns"].items():
            arrays[key] = _arrow(pa, values, present)
        return pa.table(arrays)
    cols = long_columns(data, with_rows=bool(data.extra_columns))
    keys = pa.DictionaryArray.from_arrays(_arrow(pa, cols["code"].astype(np.int32, copy=False)), _strings(pa, cols["keys"]))
    arrays = {"step": _arrow(pa, cols["step"]), "time": _arrow(pa, cols["time"]), "key": keys,
              "value": _arrow(pa, cols["value"])}  # fmt: skip
    arrays.update((name, pa.array(labels[cols["row"]], pa.string())) for name, labels in data.extra_columns.items())
    return pa.table(arrays)


# pa.array() on anything (a numpy array, a list) imports pandas to ask whether it is a pandas
# object: ~0.2 s of a cold export. Arrays built from buffers skip that (legacy string columns,
# small and rare, still go through pa.array).
def _arrow(pa: Any, values: np.ndarray, present: np.ndarray | None = None) -> Any:
    """A pyarrow array over a numpy array's memory; ``present`` False marks a null."""
    values = np.ascontiguousarray(values)
    nulls = 0 if present is None else len(present) - int(np.count_nonzero(present))
    validity = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [validity, pa.py_buffer(values)],
                                 null_count=nulls)  # fmt: skip


def _strings(pa: Any, texts: list[str]) -> Any:
    """A pyarrow string array of ``texts`` (no nulls), built from its offsets and bytes."""
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def warm_up_in_background() -> Any:
    """Start importing pyarrow and its Parquet writer on a daemon thread; returns the thread.

    The import (~0.1 s, holding the GIL) then runs while DuckDB parses the input with the GIL
    released, instead of after it. Join the thread before the process exits.
    """
    import threading

    def work() -> None:
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            pass  # export reports the missing extra itself

    thread = threading.Thread(target=work, name="pyarrow-warm-up", daemon=True)
    thread.start()
    return thread


def export(data: MetricsData, out: Path, fmt: str, wide: bool = False) -> int:
    """Write ``data`` to ``out`` in ``fmt``; returns the number of rows written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        return _write_jsonl(data, out, wide)
    table = to_arrow(data, wide)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # Dictionary-encode only the key column: steps, times and values are nearly all
        # distinct, and trying a dictionary for them costs a third of the write.
        pq.write_table(table, out, use_dictionary=["key"] if not wide else False)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(_plain_keys(table), out)
    else:
        raise UnknownFormatError("export format", fmt, FORMATS)
    return table.num_rows


def _plain_keys(table: Any) -> Any:
    # The CSV writer wants plain strings rather than dictionary-encoded keys.
    import pyarrow as pa

    if "key" in table.column_names and pa.types.is_dictionary(table.schema.field("key").type):
        index = table.column_names.index("key")
        return table.set_column(index, "key", table.column("key").cast(pa.string()))
    return table


def _write_jsonl(data: MetricsData, out: Path, wide: bool) -> int:
    import orjson

    from codex_ml.rundir.encoding import encode_number

    lines: list[bytes] = []
    if wide:
        cols = wide_columns(data)
        named = list(cols["columns"].items())
        extras = list(cols["extras"].items())
        for i, step in enumerate(cols["step"].tolist()):
            row = {"step": step, "time": float(cols["time"][i])}
            row.update((name, labels[i]) for name, labels in extras)
            row.update((k, encode_number(float(v[i]))) for k, (v, p) in named if p[i])
            lines.append(orjson.dumps(row))
    else:
        cols = long_columns(data, with_rows=bool(data.extra_columns))
        keys = cols["keys"]
        extras = [(name, labels[cols["row"]].tolist()) for name, labels in data.extra_columns.items()]
        columns = zip(cols["step"].tolist(), cols["time"].tolist(), cols["code"].tolist(), cols["value"].tolist())
        for i, (step, when, code, value) in enumerate(columns):
            row = {"step": step, "time": when, "key": keys[code], "value": encode_number(value)}
            row.update((name, labels[i]) for name, labels in extras)
            lines.append(orjson.dumps(row))
    out.write_bytes(b"\n".join(lines) + (b"\n" if lines else b""))
    return len(lines)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise MissingExtraError("export to CSV/Parquet", "pyarrow", "export") from exc
    return pyarrow
