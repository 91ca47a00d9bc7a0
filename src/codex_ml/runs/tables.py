"""The index's DuckDB tables (schema in ``codex_ml.runs.index``), built from its entries.

Built through Arrow: a few thousand rows load in milliseconds, where row-by-row inserts would not.
"""

from __future__ import annotations

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


def create_points(con: Any, index: Any) -> None:
    """The view ``points(run_id, key, step, value)``: every point of every run, on its surviving timeline.

    Read by DuckDB straight from the NDJSON files when a query uses it; a torn or bad line is
    skipped (``ignore_errors``), and the points a rollback superseded are left out
    (docs/run-directory.md, "Rewinds"), as every other reader does.
    """
    import pyarrow as pa

    from codex_ml.rundir.rewinds import read_rewinds

    if con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'points'").fetchall()[0][0]:
        return
    files, rewinds = {"filename": [], "run_id": []}, {"run_id": [], "time": [], "step": []}
    for run_id, run_dir in index.dirs.items():
        path = run_dir / METRICS_FILE
        if path.is_file() and path.stat().st_size:
            files["filename"].append(str(path))
            files["run_id"].append(run_id)
        for rewind in read_rewinds(run_dir):
            _add(rewinds, run_id, rewind.time, rewind.step)
    con.register("_files_arrow", pa.table({k: pa.array(v, pa.string()) for k, v in files.items()}))
    con.execute("CREATE TABLE _points_files AS SELECT * FROM _files_arrow")
    con.unregister("_files_arrow")
    con.register("_rewinds_arrow", pa.table({"run_id": pa.array(rewinds["run_id"], pa.string()),
                                             "time": pa.array(rewinds["time"], pa.float64()),
                                             "step": pa.array(rewinds["step"], pa.int64())}))
    con.execute("CREATE TABLE _points_rewinds AS SELECT * FROM _rewinds_arrow")
    con.unregister("_rewinds_arrow")
    if not files["filename"]:
        con.execute("CREATE VIEW points AS SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS key, NULL::BIGINT AS step, "
                    "NULL::DOUBLE AS value WHERE false")
        return
    listing = "[" + ", ".join(_literal(f) for f in files["filename"]) + "]"
    con.execute(f"""
        CREATE VIEW points AS
        WITH raw AS (
            SELECT f.run_id, r.step, r.time, unnest(map_keys(r.metrics)) AS key, unnest(map_values(r.metrics)) AS value
            FROM read_ndjson({listing}, filename = true, ignore_errors = true, format = 'newline_delimited',
                             columns = {{step: 'BIGINT', time: 'DOUBLE', metrics: 'MAP(VARCHAR, DOUBLE)'}}) AS r
            JOIN _points_files AS f ON r.filename = f.filename
            WHERE r.step IS NOT NULL AND r.metrics IS NOT NULL)
        SELECT run_id, key, step, value FROM raw AS p
        WHERE NOT EXISTS (SELECT 1 FROM _points_rewinds AS w WHERE w.run_id = p.run_id AND p.time < w.time AND p.step > w.step)""")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
