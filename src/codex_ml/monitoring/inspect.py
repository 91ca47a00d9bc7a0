"""``codex-ml monitoring inspect``: what a run logged, per metric, in one screen.

Per metric: count, first/last step, min/max/mean (of the finite values), last value,
NaN/Inf counts, wall-time span and rate. System telemetry gets the same summary. Lines
that could not be read are listed with their numbers; a torn last line is reported, not
fatal. The run's health events (events.ndjson) follow: a count per rule and the first
events, one line each. Several inputs are shown side by side; ``--json`` gives the same
data to machines (every event under ``health_events``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.monitoring import health_events
from codex_ml.monitoring.loading import MetricsData, Series, load
from codex_ml.monitoring.runs import SYSTEM, RunSource, resolve
from codex_ml.rundir.encoding import encode_number

#: System series shown to humans (the JSON output has all of them).
_SYSTEM_HIGHLIGHTS = ("percent", "rss_bytes", "utilization", "power_w", "temperature", "load/1m")
MAX_SYSTEM_ROWS = 16


def series_stats(series: Series) -> dict[str, Any]:
    """Summary numbers of one metric (min/max/mean over the finite values only)."""
    values = series.values
    finite_mask = np.isfinite(values)
    finite_count = int(np.count_nonzero(finite_mask))
    # The usual metric is finite throughout: then no copy of the finite values and no NaN pass.
    all_finite = finite_count == len(values)
    finite = values if all_finite else values[finite_mask]
    nan_count = 0 if all_finite else int(np.count_nonzero(np.isnan(values)))
    times = series.times
    first_time, last_time = float(times.min()), float(times.max())
    span = last_time - first_time if len(times) else 0.0
    return {
        "count": len(values),
        "first_step": int(series.steps[0]),
        "last_step": int(series.steps[-1]),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "last": float(values[-1]),
        "nan": nan_count,
        "inf": int(len(values) - finite_count - nan_count),
        "first_time": first_time,
        "last_time": last_time,
        "span_s": span,
        "rate_per_s": (len(values) - 1) / span if span > 0 else None,
    }


def summarize(data: MetricsData) -> dict[str, Any]:
    """Per-metric statistics plus what the read found (bad lines, torn tail)."""
    span = data.time_span
    return {
        "file": str(data.path),
        "kind": data.kind,
        # "codex_ml", or "legacy" for the origin toolkit's one-metric-per-line log (legacy_format).
        "format": data.extra.get("format", "codex_ml"),
        "records": data.records,
        # Records a rollback superseded (left out of every metric below: each step shows once).
        "superseded_records": data.superseded,
        "first_time": span[0] if span else None,
        "last_time": span[1] if span else None,
        "span_s": (span[1] - span[0]) if span else 0.0,
        "bad_lines": [{"line": line, "error": why} for line, why in data.report.bad_lines],
        "torn_tail": data.report.torn_tail,
        "metrics": {key: series_stats(series) for key, series in data.series.items()},
    }


def inspect_source(source: RunSource) -> dict[str, Any]:
    """Everything ``inspect`` reports about one run directory or file."""
    main = summarize(load(source.main, source.kind))
    result: dict[str, Any] = {"path": source.label, "run": _run_meta(source), **main}
    # The main file may itself be system metrics (a sampler-only folder); the other ranks' files follow it.
    systems = [summarize(load(path, SYSTEM)) for path in source.system_files]
    if systems:
        result["system"] = systems[0] if len(systems) == 1 else {"files": systems}
    else:
        result["system"] = None
    result.update(health_section(source))
    return result


def health_section(source: RunSource) -> dict[str, Any]:
    """The input's health events (JSON-ready), the count per rule, and what reading events.ndjson found
    (``health_events_file`` is None when the input has no events file)."""
    events, report = health_events.load(source)
    return {
        "health_events": [event.to_json() for event in events],
        "health_by_rule": health_events.by_rule(events),
        "health_events_file": None if report is None else {
            "file": report.path,
            "bad_lines": [{"line": line, "error": why} for line, why in report.bad_lines],
            "torn_tail": report.torn_tail,
        },
    }


def _run_meta(source: RunSource) -> dict[str, Any]:
    info, summary = source.run_info, source.summary
    return {
        "name": info.get("run_name") or info.get("name"),
        "run_id": info.get("run_id"),
        "status": summary.get("status") or info.get("status"),
        "backends": sorted(source.backends),
        # Every sink the run wrote besides its NDJSON log (union over resumed sessions).
        "sinks": list(info.get("sinks") or []),
    }


def inspect_paths(paths: list[str | Path]) -> list[dict[str, Any]]:
    """``inspect_source`` for each path, in order."""
    return [inspect_source(resolve(path)) for path in paths]


def to_json(results: list[dict[str, Any]]) -> bytes:
    """Machine-readable output; non-finite numbers spelled as in the NDJSON files."""
    import orjson

    return orjson.dumps({"runs": _json_safe(results)}, option=orjson.OPT_INDENT_2) + b"\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return encode_number(value)
    return value


# -- rendering for humans ---------------------------------------------------------
def fmt(value: float | int | None) -> str:
    """A compact number: 4 significant digits, ints as they are, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


def render(results: list[dict[str, Any]], console: Any) -> None:
    """Rich tables: a header per input, then one metrics table (side by side for several)."""
    from rich.table import Table

    for result in results:
        console.print(_header(result))
        for line in _problems(result):
            console.print(line, style="yellow")
    if len(results) == 1:
        console.print(_single_table(results[0], "metrics"))
    else:
        console.print(_side_by_side(results))
    for result in results:
        for system in system_summaries(result):
            table = Table(title=f"system metrics — {_system_label(result, system)} ({system['records']} samples)")
            _fill_single(table, system["metrics"], _system_keys(system["metrics"]))
            console.print(table)
    for result in results:
        for line in health_lines(result):
            console.print(line, highlight=False, markup=False)


def health_lines(result: dict[str, Any], limit: int = health_events.MAX_LISTED) -> list[str]:
    """The health section of one input: a count per rule, then up to ``limit`` events, one a line."""
    found = result.get("health_events_file")
    if found is None:
        return []  # a bare NDJSON file, or a run that never wrote events.ndjson (health off or older)
    events = [e for e in map(health_events.parse, result["health_events"]) if e is not None]
    counts = ", ".join(f"{rule} {n}" for rule, n in result["health_by_rule"].items())
    lines = [f"health events — {result['path']}: {len(events) or 'none'}" + (f" ({counts})" if counts else "")]
    for event in events[:limit]:
        when = time.strftime("%H:%M:%S", time.gmtime(event.time))
        lines.append(f"  {when} UTC  {health_events.describe(event)}")
    if len(events) > limit:
        lines.append(f"  ... {len(events) - limit} more (--json lists them all)")
    lines += [f"  {found['file']}:{bad['line']}: {bad['error']}" for bad in found["bad_lines"][:5]]
    if found["torn_tail"]:
        lines.append(f"  {found['file']}: the last line is torn (cut off mid-write); skipped")
    return lines


def system_summaries(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The system-metrics summaries of one inspected input: none, one, or one per rank file."""
    system = result.get("system")
    if not system:
        return []
    return list(system["files"]) if "files" in system else [system]


def _system_label(result: dict[str, Any], system: dict[str, Any]) -> str:
    # The file, relative to the run directory when it is inside it (checkpoints/system_metrics.rank1.jsonl).
    try:
        return f"{result['path']}: {Path(system['file']).relative_to(result['path'])}"
    except ValueError:
        return f"{result['path']}: {system['file']}"


def _header(result: dict[str, Any]) -> str:
    run = result["run"]
    parts = [f"[bold]{result['path']}[/bold]", f"{result['records']:,} records", f"{len(result['metrics'])} metrics"]
    if result.get("superseded_records"):
        parts.append(f"{result['superseded_records']:,} records superseded by a rollback (not counted below)")
    if result.get("format") == "legacy":
        parts.append("legacy format (one metric per line; step = index within each metric)")
    if result["span_s"]:
        parts.append(f"{result['span_s']:.1f} s of wall time")
    if run.get("status"):
        parts.append(f"status {run['status']}")
    if run.get("sinks") or run.get("backends"):
        parts.append("sinks " + ", ".join(run.get("sinks") or run["backends"]))
    return "  ".join(parts)


def _problems(result: dict[str, Any]) -> list[str]:
    lines = [f"  {result['file']}:{bad['line']}: {bad['error']}" for bad in result["bad_lines"][:20]]
    if len(result["bad_lines"]) > 20:
        lines.append(f"  ... and {len(result['bad_lines']) - 20} more unreadable lines")
    if result["torn_tail"]:
        lines.append(f"  {result['file']}: the last line is torn (cut off mid-write, e.g. by a crash); skipped")
    return lines


def _single_table(result: dict[str, Any], what: str) -> Any:
    from rich.table import Table

    table = Table(title=f"{what} — {result['path']}")
    _fill_single(table, result["metrics"], list(result["metrics"]))
    return table


def _fill_single(table: Any, metrics: dict[str, Any], keys: list[str]) -> None:
    for column in ("metric", "count", "steps", "min", "max", "mean", "last", "NaN/Inf", "span s", "rate/s"):
        if column == "metric":
            table.add_column(column, no_wrap=True)  # names are what users search for: never split them
        else:
            table.add_column(column, justify="right")
    for key in keys:
        s = metrics[key]
        table.add_row(key, f"{s['count']:,}", f"{s['first_step']}–{s['last_step']}", fmt(s["min"]), fmt(s["max"]),
                      fmt(s["mean"]), fmt(s["last"]), f"{s['nan']}/{s['inf']}", f"{s['span_s']:.1f}",
                      fmt(s["rate_per_s"]))  # fmt: skip


def _side_by_side(results: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="metrics, side by side (last value; min–max; points)")
    table.add_column("metric", no_wrap=True)
    for result in results:
        table.add_column(result["path"], justify="right")
    keys = list(dict.fromkeys(key for result in results for key in result["metrics"]))
    for key in keys:
        cells = []
        for result in results:
            s = result["metrics"].get(key)
            cells.append("-" if s is None else f"{fmt(s['last'])}  ({fmt(s['min'])}–{fmt(s['max'])}; n={s['count']:,})")
        table.add_row(key, *cells)
    return table


def _system_keys(metrics: dict[str, Any]) -> list[str]:
    chosen = [k for k in metrics if any(h in k for h in _SYSTEM_HIGHLIGHTS) and "/per_core/" not in k]
    return (chosen or list(metrics))[:MAX_SYSTEM_ROWS]
