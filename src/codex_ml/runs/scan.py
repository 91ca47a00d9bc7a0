"""Summarising many metrics files in one DuckDB query: the cold build of a large index.

``load_metrics`` (``codex_ml.monitoring.loading``) reads one file into numpy arrays; the index
only needs each metric's last/min/max/sum/count, which DuckDB computes while it parses, over
many files at once (in parallel, no arrays handed to Python). About five times faster per file.

Like the monitoring DuckDB reader it is used only when it can vouch for an exact result, with
the same proof (``codex_ml.monitoring.json_marks``): DuckDB needs every metric name up front
and quietly drops keys it was not told about, so a file's ``:`` and ``"`` counts must equal the
keys and non-finite values the query saw. A file it cannot vouch for (a torn last line, a
rewind in its events.ndjson, the legacy format, names it did not probe, a null) is left out and
read by ``load_metrics``, which handles all of these. A line DuckDB cannot parse is skipped
(``ignore_errors``), as every reader skips it; one whose colons or quotes the marks count (a
broken record) makes its file fall back, so one bad file never fails the others' query.

"Last" here is the value with the latest wall time: the file order for every run written by one
process at a time (the run lock guarantees it) whose clock does not go back.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codex_ml.monitoring.json_marks import Marks, count_marks
from codex_ml.monitoring.legacy_format import is_legacy_file
from codex_ml.rundir.paths import METRICS_FILE
from codex_ml.rundir.rewinds import read_rewinds

__all__ = ["scan_runs"]

#: Lines parsed at each end of a file to learn its metric names (a missed name is caught by the marks).
_PROBE_LINES = 32
_PROBE_BYTES = 64 << 10


def scan_runs(run_dirs: Iterable[Path]) -> dict[Path, dict[str, Any]]:
    """``run_dir -> metrics part of an entry`` for the runs this path vouches for (others are left out)."""
    groups: dict[tuple[str, ...], list[tuple[Path, Marks, list[int]]]] = {}
    for run_dir in run_dirs:
        probed = _probe(run_dir)
        if probed is not None:
            names, marks, sig = probed
            groups.setdefault(names, []).append((run_dir, marks, sig))
    out: dict[Path, dict[str, Any]] = {}
    for names, files in groups.items():
        out.update(_query(names, files))
    return out


def _probe(run_dir: Path) -> tuple[tuple[str, ...], Marks, list[int]] | None:
    """(metric names, punctuation counts, [size, mtime_ns, inode]) of a file this path can take."""
    import os

    import orjson

    path = run_dir / METRICS_FILE
    if read_rewinds(run_dir):
        return None  # superseded records must be dropped: load_metrics applies the rule
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size == 0:
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
                if raw[-1] != ord("\n") or is_legacy_file(raw):
                    return None
                lines = raw[:_PROBE_BYTES].split(b"\n")[:-1][:_PROBE_LINES]
                if len(raw) > _PROBE_BYTES:
                    lines += raw[len(raw) - _PROBE_BYTES:].split(b"\n")[1:-1][-_PROBE_LINES:]
                marks = Marks()
                count_marks(raw, len(raw), marks)
    except OSError:
        return None
    names: dict[str, None] = {}
    for line in lines:
        try:
            metrics = orjson.loads(line).get("metrics")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        if not isinstance(metrics, dict):
            return None
        names.update(dict.fromkeys(metrics))
    if not names or len({n.lower() for n in names}) != len(names) or any("\x00" in n for n in names):
        return None  # DuckDB's STRUCT field names are case-insensitive (and end at a NUL)
    return tuple(sorted(names)), marks, [st.st_size, st.st_mtime_ns, st.st_ino]


def _query(names: tuple[str, ...], files: list[tuple[Path, Marks, list[int]]]) -> dict[Path, dict[str, Any]]:
    import duckdb

    by_name = {str(run_dir / METRICS_FILE): (run_dir, marks, sig) for run_dir, marks, sig in files}
    con = duckdb.connect(config={"autoinstall_known_extensions": False})  # never fetch an extension at run time
    con.execute("SET enable_progress_bar = false")  # DuckDB would draw one on stdout for a long scan
    try:
        result = con.execute(_sql(names, list(by_name))).fetchall()
    except duckdb.Error:
        return {}  # a file that is not NDJSON at all: load_metrics reads each one and says what it found
    finally:
        con.close()
    out = {}
    for row in result:
        run_dir, marks, sig = by_name[row[0]]
        part = _part(row, names, marks)
        if part is not None and _unchanged(run_dir, sig):
            part["offset"], part["sig"] = sig[0], sig
            out[run_dir] = part
    return out


def _sql(names: tuple[str, ...], paths: list[str]) -> str:
    # Plain columns first, then CASE-made ones (the finite value, the time a value was logged):
    # aggregates over those run about twice as fast as FILTER clauses on struct fields.
    fields = ", ".join(f"{_ident(n)} DOUBLE" for n in names)
    columns = f"{{v: 'BIGINT', step: 'BIGINT', time: 'DOUBLE', metrics: {_lit(f'STRUCT({fields})')}}}"
    listing = "[" + ", ".join(_lit(p) for p in paths) + "]"
    plain = ", ".join(f"metrics.{_ident(n)} AS c{i}" for i, n in enumerate(names))
    made = ", ".join(f"c{i}, CASE WHEN isfinite(c{i}) THEN c{i} END AS f{i}, CASE WHEN c{i} IS NOT NULL THEN time END AS t{i}"
                     for i in range(len(names)))
    # The last value and its step from one row (a tie in time cannot pair one row's value with another's step).
    aggregates = ", ".join(f"count(c{i}), count(f{i}), min(f{i}), max(f{i}), sum(f{i}), "
                           f"arg_max(struct_pack(v := c{i}, s := step), t{i})" for i in range(len(names)))
    return (f"SELECT filename, count(*), count(v), count(step), count(time), count(metrics), min(time), max(time), "
            f"{aggregates} FROM (SELECT filename, v, step, time, metrics, {made} FROM (SELECT filename, v, step, time, "
            f"metrics IS NOT NULL AS metrics, {plain} FROM read_ndjson({listing}, filename = true, "
            f"format = 'newline_delimited', records = true, ignore_errors = true, columns = {columns}))) GROUP BY filename")


def _part(row: tuple[Any, ...], names: tuple[str, ...], marks: Marks) -> dict[str, Any] | None:
    records, nv, nstep, ntime, nmetrics, first, last = row[1:8]
    if nstep != records or ntime != records or nmetrics != records:
        return None  # a record without a step, time or metrics object: load_metrics names the line
    metrics: dict[str, list[Any]] = {}
    values = non_finite = 0
    for i, name in enumerate(names):
        count, finite, lo, hi, total, last = row[8 + 6 * i: 14 + 6 * i]
        values += count
        non_finite += count - finite
        if count:
            metrics[name] = [float(last["v"]), lo, hi, total if finite else None, finite, count, last["s"]]
    keys = nv + nstep + ntime + nmetrics + values
    if marks.colons != keys or marks.quotes != 2 * keys + 2 * non_finite:
        return None  # a key the query did not name, a null, a nested object ...
    return {"metrics": metrics, "complete": True, "first_time": first, "last_time": last}


def _unchanged(run_dir: Path, sig: list[int]) -> bool:
    import os

    try:
        st = os.stat(run_dir / METRICS_FILE)
    except OSError:
        return False
    return [st.st_size, st.st_mtime_ns, st.st_ino] == sig  # grown while read (a live run): read it again


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
