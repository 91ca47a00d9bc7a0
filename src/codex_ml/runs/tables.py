"""The index's DuckDB tables (schema in ``codex_ml.runs.index``), built from its entries.

Built through Arrow: a few thousand rows load in milliseconds, where row-by-row inserts would not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from codex_ml.rundir.paths import METRICS_FILE
from codex_ml.runs.summary import COUNT, FINITE, LAST, LAST_STEP, MAX, MIN, SUM

__all__ = ["create_points", "create_tables"]

_RUNS = ("CREATE TABLE runs AS SELECT run_id::VARCHAR AS run_id, name::VARCHAR AS name, status::VARCHAR AS status, "
         "CASE WHEN start IS NULL THEN NULL ELSE make_timestamp(CAST(round(start * 1e6) AS BIGINT)) END AS start, "
         "duration::DOUBLE AS duration, path::VARCHAR AS path, sinks::VARCHAR AS sinks FROM _runs")
_PARAMS = "CREATE TABLE params AS SELECT run_id::VARCHAR AS run_id, key::VARCHAR AS key, value::VARCHAR AS value, num::DOUBLE AS num FROM _params"
_TAGS = "CREATE TABLE tags AS SELECT run_id::VARCHAR AS run_id, key::VARCHAR AS key, value::VARCHAR AS value FROM _tags"
_STATS = ("CREATE TABLE metric_stats AS SELECT run_id::VARCHAR AS run_id, key::VARCHAR AS key, last::DOUBLE AS last, "
          "min::DOUBLE AS min, max::DOUBLE AS max, mean::DOUBLE AS mean, count::BIGINT AS count, "
          "last_step::BIGINT AS last_step FROM _stats")


def create_tables(con: Any, index: Any) -> None:
    """Create runs, params, tags and metric_stats on ``con`` from ``index`` (a RunIndex)."""
    import pyarrow as pa

    runs: dict[str, list[Any]] = {k: [] for k in ("run_id", "name", "status", "start", "duration", "path", "sinks")}
    params: dict[str, list[Any]] = {k: [] for k in ("run_id", "key", "value", "num")}
    tags: dict[str, list[Any]] = {k: [] for k in ("run_id", "key", "value")}
    stats: dict[str, list[Any]] = {k: [] for k in ("run_id", "key", "last", "min", "max", "mean", "count", "last_step")}
    for run_id, entry in index.entries.items():
        _add(runs, run_id, entry["name"], index.status.get(run_id), entry.get("start"), index.duration(run_id),
             str(index.dirs[run_id]), entry.get("sinks") or "")
        for key, value, num in entry.get("params", []):
            _add(params, run_id, key, value, num)
        for key, value in entry.get("tags", []):
            _add(tags, run_id, key, value)
        for key, s in entry.get("metrics", {}).items():
            mean = s[SUM] / s[FINITE] if s[FINITE] else None
            _add(stats, run_id, key, s[LAST], s[MIN], s[MAX], mean, s[COUNT], s[LAST_STEP])
    types = {"start": pa.float64(), "duration": pa.float64(), "num": pa.float64(), "last": pa.float64(),
             "min": pa.float64(), "max": pa.float64(), "mean": pa.float64(), "count": pa.int64(), "last_step": pa.int64()}
    for name, columns, sql in (("_runs", runs, _RUNS), ("_params", params, _PARAMS), ("_tags", tags, _TAGS), ("_stats", stats, _STATS)):
        table = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})
        con.register(name, table)
        con.execute(sql)
        con.unregister(name)


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
    _register(con, "_points_files", files, {})
    _register(con, "_points_rewinds", _rewinds(index, files["run_id"]), {"time": "DOUBLE", "step": "BIGINT"})
    con.execute(f"CREATE OR REPLACE VIEW points AS {_points_sql(files['filename'], names)}")


def _rewinds(index: Any, run_ids: list[str]) -> dict[str, list[Any]]:
    from codex_ml.rundir.rewinds import read_rewinds

    rewinds: dict[str, list[Any]] = {"run_id": [], "time": [], "step": []}
    for run_id in run_ids:
        for rewind in read_rewinds(index.dirs[run_id]):
            _add(rewinds, run_id, rewind.time, rewind.step)
    return rewinds


def _register(con: Any, name: str, columns: dict[str, list[Any]], types: dict[str, str]) -> None:
    import pyarrow as pa

    arrow = {"DOUBLE": pa.float64(), "BIGINT": pa.int64()}
    con.register("_arrow", pa.table({k: pa.array(v, arrow.get(types.get(k, ""), pa.string())) for k, v in columns.items()}))
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _arrow")
    con.unregister("_arrow")


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
