"""The index's DuckDB tables (schema in ``codex_ml.runs.index``), built from its entries.

Each table is one statement with a list parameter per column: 15,000 rows load in about 20 ms,
where row-by-row inserts would take seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from codex_ml.rundir.paths import METRICS_FILE
from codex_ml.runs.summary import COUNT, FINITE, LAST, LAST_STEP, MAX, MIN, SUM

__all__ = ["METRIC_STATS", "PARAMS", "RUNS", "TAGS", "create_points", "create_table", "create_tables"]

#: Each table's columns and DuckDB types, in order (the schema codex_ml.runs.sql compiles against).
RUNS = {"run_id": "VARCHAR", "name": "VARCHAR", "status": "VARCHAR", "start": "DOUBLE", "duration": "DOUBLE",
        "path": "VARCHAR", "sinks": "VARCHAR"}
PARAMS = {"run_id": "VARCHAR", "key": "VARCHAR", "value": "VARCHAR", "num": "DOUBLE"}
TAGS = {"run_id": "VARCHAR", "key": "VARCHAR", "value": "VARCHAR"}
METRIC_STATS = {"run_id": "VARCHAR", "key": "VARCHAR", "last": "DOUBLE", "min": "DOUBLE", "max": "DOUBLE",
                "mean": "DOUBLE", "count": "BIGINT", "last_step": "BIGINT"}


def create_tables(con: Any, index: Any) -> None:
    """Create runs, params, tags and metric_stats on ``con`` from ``index`` (a RunIndex)."""
    runs, params, tags, stats = [], [], [], []  # rows as tuples: appending a tuple is the cheapest step per row
    for run_id, entry in index.entries.items():
        runs.append((run_id, entry["name"], index.status.get(run_id), entry.get("start"), index.duration(run_id),
                     str(index.dirs[run_id]), entry.get("sinks") or ""))
        params.extend((run_id, key, value, num) for key, value, num in entry.get("params", []))
        tags.extend((run_id, key, value) for key, value in entry.get("tags", []))
        stats.extend((run_id, key, s[LAST], s[MIN], s[MAX], s[SUM] / s[FINITE] if s[FINITE] else None, s[COUNT],
                      s[LAST_STEP]) for key, s in entry.get("metrics", {}).items())
    create_table(con, "runs", _columns(runs, RUNS), RUNS)
    # start: epoch seconds in the index, a TIMESTAMP (UTC, no zone) in the table.
    con.execute("CREATE OR REPLACE TABLE runs AS SELECT * REPLACE (CASE WHEN start IS NULL THEN NULL ELSE "
                "make_timestamp(CAST(round(start * 1e6) AS BIGINT)) END AS start) FROM runs")
    create_table(con, "params", _columns(params, PARAMS), PARAMS)
    create_table(con, "tags", _columns(tags, TAGS), TAGS)
    create_table(con, "metric_stats", _columns(stats, METRIC_STATS), METRIC_STATS)


def _columns(rows: list[tuple[Any, ...]], types: dict[str, str]) -> dict[str, list[Any]]:
    transposed = list(zip(*rows)) or [()] * len(types)
    return {name: list(column) for name, column in zip(types, transposed)}


def create_table(con: Any, name: str, columns: dict[str, list[Any]], types: dict[str, str]) -> None:
    """``CREATE OR REPLACE TABLE name`` from Python lists, one per column (typed by ``types``).

    Passed as DuckDB list parameters and unnested side by side: no pyarrow, which would import
    pandas (0.6 s) on its way to building a table from Python objects.
    """
    selects = ", ".join(f"unnest(${i}::{types[k]}[]) AS {k}" for i, k in enumerate(types, start=1))
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {selects}", [columns[k] for k in types])


def _add(columns: dict[str, list[Any]], *values: Any) -> None:
    for column, value in zip(columns.values(), values):
        column.append(value)


def create_points(con: Any, index: Any, keys: Iterable[str] | None = None) -> None:
    """The view ``points(run_id, key, step, value)``: every point of every run, on its surviving timeline.

    Read by DuckDB straight from the NDJSON files when a query uses it; a torn or bad line is
    skipped (``ignore_errors``), and the points a rollback superseded are left out
    (docs/run-directory.md, "Rewinds"), as every other reader does. With ``keys``, only those
    metrics, and only the files of runs that logged one of them (the index knows which), are
    read: a query naming one metric parses a fraction of the data. Without, every metric, once
    per connection.
    """
    exists = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'points'").fetchall()[0][0]
    if exists and keys is None:
        return
    wanted = None if keys is None else set(keys)
    per_run = {run_id: [k for k in entry.get("metrics", {}) if wanted is None or k in wanted]
               for run_id, entry in index.entries.items()}
    files = {"filename": [], "run_id": []}
    for run_id, run_keys in per_run.items():
        path = index.dirs[run_id] / METRICS_FILE
        if run_keys and path.is_file():
            _add(files, str(path), run_id)
    names = sorted({k for run_keys in per_run.values() for k in run_keys})
    create_table(con, "_points_files", files, {"filename": "VARCHAR", "run_id": "VARCHAR"})
    create_table(con, "_points_rewinds", _rewinds(index, files["run_id"]), {"run_id": "VARCHAR", "time": "DOUBLE", "step": "BIGINT"})
    con.execute(f"CREATE OR REPLACE VIEW points AS {_points_sql(files['filename'], names)}")


def _rewinds(index: Any, run_ids: list[str]) -> dict[str, list[Any]]:
    from codex_ml.rundir.rewinds import read_rewinds

    rewinds: dict[str, list[Any]] = {"run_id": [], "time": [], "step": []}
    for run_id in run_ids:
        for rewind in read_rewinds(index.dirs[run_id]):
            _add(rewinds, run_id, rewind.time, rewind.step)
    return rewinds


def _points_sql(paths: list[str], names: list[str]) -> str:
    if not paths:
        return "SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS key, NULL::BIGINT AS step, NULL::DOUBLE AS value WHERE false"
    listing = "[" + ", ".join(_literal(p) for p in paths) + "]"
    read = (f"read_ndjson({listing}, filename = true, ignore_errors = true, format = 'newline_delimited', "
            "columns = {{step: 'BIGINT', time: 'DOUBLE', metrics: {metrics}}})")
    survivors = ("NOT EXISTS (SELECT 1 FROM _points_rewinds AS w WHERE w.run_id = p.run_id AND p.__time < w.time "
                 "AND p.step > w.step)")
    lowered = {n.lower() for n in names}
    if len(lowered) == len(names) and not lowered & _OWN_COLUMNS and not any("\x00" in n for n in names):
        # A STRUCT of the metric names, unpivoted: four to five times faster than a MAP, which DuckDB
        # builds per record. Column names are case-insensitive (and may not repeat the query's own
        # columns), hence the MAP for "a" beside "A", or a metric called "step".
        struct = _literal("STRUCT(" + ", ".join(f"{_ident(n)} DOUBLE" for n in names) + ")")
        columns = ", ".join(f"r.metrics.{_ident(n)} AS {_ident(n)}" for n in names)
        return (f"SELECT p.run_id, p.key, p.step, p.value FROM (SELECT * FROM (SELECT f.run_id, r.step, r.time AS __time, "
                f"{columns} FROM {read.format(metrics=struct)} AS r JOIN _points_files AS f ON r.filename = f.filename) "
                f"UNPIVOT (value FOR key IN ({', '.join(_ident(n) for n in names)}))) AS p WHERE {survivors}")
    return (f"SELECT p.run_id, p.key, p.step, p.value FROM (SELECT f.run_id, r.step, r.time AS __time, "
            f"unnest(map_keys(r.metrics)) AS key, unnest(map_values(r.metrics)) AS value "
            f"FROM {read.format(metrics=_literal('MAP(VARCHAR, DOUBLE)'))} AS r JOIN _points_files AS f "
            f"ON r.filename = f.filename WHERE r.metrics IS NOT NULL) AS p WHERE {survivors}")


#: Columns of the unpivoted select that a metric name must not repeat.
_OWN_COLUMNS = frozenset({"run_id", "step", "__time", "key", "value", "filename", "metrics", "time"})


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
