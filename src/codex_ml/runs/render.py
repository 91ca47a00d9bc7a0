"""Printing runs: a rich table (default), ``--json`` or ``--csv`` (docs/runs.md).

Used by ``codex-ml runs list`` and ``codex-ml runs query``: both hand over a connection holding
the index tables (``codex_ml.runs.index``) and the run ids to show, in order.

- ``records(con, run_ids)``: one dict per run, the ``--json`` shape: name, run_id, status,
  start (ISO 8601, UTC), duration (seconds), sinks (list), path, params{}, tags{},
  metrics{key: {last, min, max, mean, count}}; a non-finite number is spelled "NaN",
  "Infinity" or "-Infinity", as in metrics.ndjson.
- ``rows(con, run_ids, columns)``: flat dicts keyed by column name (``codex_ml.runs.columns``).
- ``print_runs(...)``: the table shows name, status, start, duration, the sort field, the params
  that differ between the runs and the last value of the metrics most runs have (losses first,
  timings last), ``MAX_TABLE_METRICS`` columns in all; CSV has every column; ``--columns``
  picks the columns of all three (JSON then holds flat objects: run_id and those columns).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from codex_ml.errors import CodexMLError
from codex_ml.rundir.encoding import json_safe
from codex_ml.runs.params_diff import differing
from codex_ml.runs.columns import Column, available, metric_column, param_column, parse_columns, tag_column

__all__ = ["MAX_TABLE_METRICS", "index_keys", "print_runs", "records", "rows"]

#: Metric columns a default table shows (--columns or --json for the rest).
MAX_TABLE_METRICS = 8
_AGGS = ("last", "min", "max", "mean", "count")


def records(con: Any, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per run (the ``--json`` shape), in the order of ``run_ids`` (default: by run id)."""
    wanted = set(run_ids) if run_ids is not None else None
    out: dict[str, dict[str, Any]] = {}
    for run_id, name, status, start, duration, sinks, path in con.execute(
            "SELECT run_id, name, status, start, duration, sinks, path FROM runs ORDER BY run_id").fetchall():
        if wanted is None or run_id in wanted:
            out[run_id] = {"name": name, "run_id": run_id, "status": status, "start": _iso(start),
                           "duration": duration, "sinks": [s for s in (sinks or "").split(",") if s],
                           "path": path, "params": {}, "tags": {}, "metrics": {}}  # fmt: skip
    for run_id, key, value, num in con.execute("SELECT run_id, key, value, num FROM params ORDER BY run_id, key").fetchall():
        if run_id in out:
            out[run_id]["params"][key] = _param_value(value, num)
    for run_id, key, value in con.execute("SELECT run_id, key, value FROM tags ORDER BY run_id, key").fetchall():
        if run_id in out:
            out[run_id]["tags"][key] = value
    for run_id, key, *stats in con.execute(
            f"SELECT run_id, key, {', '.join(_AGGS)} FROM metric_stats ORDER BY run_id, key").fetchall():
        if run_id in out:
            out[run_id]["metrics"][key] = dict(zip(_AGGS, stats))
    order = run_ids if run_ids is not None else list(out)
    return [out[r] for r in order if r in out]


def _iso(start: datetime | None) -> str | None:
    return start.replace(tzinfo=timezone.utc).isoformat() if start is not None else None


def _param_value(value: str | None, num: float | None) -> Any:
    # A number when the param is one (so JSON keeps 0.001 a number, 4 an integer), else its text.
    if num is None:
        return value
    return int(num) if num.is_integer() and (value or "").lstrip("+-").isdigit() else num


def value_of(record: dict[str, Any], column: Column) -> Any:
    """The value of ``column`` in one record (None when the run lacks it)."""
    if column.kind == "run":
        value = record.get(column.key)
        return ",".join(value) if column.key == "sinks" else value
    if column.kind == "metric":
        stats = record["metrics"].get(column.key)
        return stats.get(column.agg or "last") if stats else None
    return record["params" if column.kind == "param" else "tags"].get(column.key)


def rows(con: Any, run_ids: list[str] | None, columns: str | None) -> list[dict[str, Any]]:
    """Flat dicts ``{column: value}`` of the runs, for ``columns`` (None: every column)."""
    cols = parse_columns(columns, index_keys(con)) if columns else None
    recs = records(con, run_ids)
    return [{c.text: value_of(r, c) for c in cols or full_columns(recs)} for r in recs]


def index_keys(con: Any) -> dict[str, list[str]]:
    """``{"params": keys, "tags": keys, "metrics": keys}`` of every run in the index (sorted)."""
    return {section: [row[0] for row in con.execute(f"SELECT DISTINCT key FROM {table} ORDER BY key").fetchall()]
            for section, table in (("params", "params"), ("tags", "tags"), ("metrics", "metric_stats"))}


def full_columns(recs: list[dict[str, Any]]) -> list[Column]:
    """Every column: the run's own, each param and tag, each metric's five aggregates (the CSV default)."""
    keys = available(recs)
    run = [Column(k, "run", k) for k in ("run_id", "name", "status", "start", "duration", "sinks")]
    return [*run, *map(param_column, keys["params"]), *map(tag_column, keys["tags"]),
            *(metric_column(k, agg) for k in keys["metrics"] for agg in _AGGS)]


#: Params the default table shows at most: those whose values differ between the runs shown
#: (they take the place of metric columns: MAX_TABLE_METRICS bounds all of them together).
MAX_TABLE_PARAMS = 4
#: Params that differ between runs for bookkeeping, not as a setting (a trial's own name, a path).
_BOOKKEEPING_PARAMS = ("tracking.", "system_metrics.", "data.resolved_path")


def table_columns(recs: list[dict[str, Any]], lead: list[Column] | tuple[Column, ...] = ()) -> list[Column]:
    """The default table: name, status, start, duration, the ``lead`` columns (the sort field),
    the params that differ between the runs, then the last value of the most common metrics
    (losses first, timings last)."""
    counts: dict[str, int] = {}
    for record in recs:
        for key in record["metrics"]:
            counts[key] = counts.get(key, 0) + 1
    shown = {(c.kind, c.key) for c in lead}

    def rank(key: str) -> tuple[int, int, str]:
        kind = 0 if "loss" in key else 2 if key.startswith("time/") else 1
        return (-counts[key], kind, key)

    params = [param_column(k) for k in differing([r["params"] for r in recs])
              if not k.startswith(_BOOKKEEPING_PARAMS) and ("param", k) not in shown][:MAX_TABLE_PARAMS]
    # The lead, params and metrics share MAX_TABLE_METRICS columns, so the table stays readable at 160.
    room = max(MAX_TABLE_METRICS - len(lead) - len(params), 1)
    keys = [k for k in sorted(counts, key=rank) if ("metric", k) not in shown][:room]
    # Runs of a nested root (sweeps/<sweep>/<trial>) may share a name: their run id tells them apart.
    nested = any("/" in r["run_id"] for r in recs)
    run = ("run_id", "name", "status", "start", "duration") if nested else ("name", "status", "start", "duration")
    # Headed by the bare key: the table's metric columns are all last values (the caption says so).
    return [*(Column(k, "run", k) for k in run), *lead, *params, *(Column(k, "metric", k, "last") for k in keys)]


def print_runs(con: Any, run_ids: list[str] | None, *, columns: str | None = None, json_output: bool = False,
               csv_output: bool = False, title: str | None = None, out: Any = None,
               lead: str | None = None) -> None:  # fmt: skip
    """Print the runs as a table, JSON or CSV on ``out`` (stdout). ``lead`` (a field, e.g. the
    sort key) is shown right after the run's own columns in the default table."""
    if json_output and csv_output:
        raise CodexMLError("--json and --csv are exclusive: choose one")
    out = out or sys.stdout
    # Columns are checked against every run of the index, so a query matching none still takes them.
    cols = parse_columns(columns, index_keys(con)) if columns else None
    recs = records(con, run_ids)
    if json_output:
        data = [{"run_id": r["run_id"], **{c.text: value_of(r, c) for c in cols}} for r in recs] if cols else recs
        out.write(orjson.dumps(json_safe(data), option=orjson.OPT_INDENT_2).decode() + "\n")  # 10x json.dumps
    elif csv_output:
        _write_csv(out, recs, cols or full_columns(recs))
    else:
        _print_table(recs, cols or table_columns(recs, lead_columns(lead, con)), title,
                     len(available(recs)["metrics"]), cols is None)


def lead_columns(lead: str | None, con: Any) -> list[Column]:
    """The sort field as a table column; none when it is one of the run's own columns."""
    if not lead:
        return []
    cols = parse_columns(lead, index_keys(con))
    return [c for c in cols if c.kind != "run"]


def _write_csv(out: Any, recs: list[dict[str, Any]], cols: list[Column]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.text for c in cols])
    for record in recs:
        writer.writerow([_csv_cell(value_of(record, c)) for c in cols])
    out.write(buffer.getvalue())


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return json_safe(value)  # "NaN", "Infinity", "-Infinity": what pandas and float() read back
    return value


def _print_table(recs: list[dict[str, Any]], cols: list[Column], title: str | None, metric_count: int, default: bool) -> None:
    from rich.table import Table

    from codex_ml.monitoring.console import table_console

    table = Table(title=title)
    for col in cols:
        numeric = col.kind == "metric" or col.key == "duration"
        table.add_column(col.text, justify="right" if numeric else "left", overflow="fold")
    for record in recs:
        table.add_row(*(_cell(value_of(record, c), c) for c in cols))
    shown = sum(1 for c in cols if c.kind == "metric")
    if default and shown:
        more = f"; {metric_count - shown} more metrics" if metric_count > shown else ""
        table.caption = f"metrics: last value{more} (--columns picks fields, --json or --csv has them all)"
    console = table_console()
    if not recs:
        console.print("no runs" + (f" ({title})" if title else ""))
        return
    console.print(table)


def _cell(value: Any, column: Column) -> str:
    if value is None:
        return ""
    if column.key == "duration" and column.kind == "run":
        return _duration(value)
    if column.key == "start" and column.kind == "run":
        return value[:19].replace("T", " ")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
