"""One run's index entry: its metadata and per-metric statistics, read from its files only.

An entry is a plain dict (it goes into the index file as JSON and through a process pool):

- ``sig``: size/mtime (and inode) of each file the entry was read from; a change means re-read;
- ``offset``/``complete``: how far metrics.ndjson was consumed, and whether the next read may
  start there (the file only grew) instead of re-reading the whole file;
- ``name``, ``status``, ``start``, ``end``, ``last_time`` (wall seconds), ``sinks``, ``params``
  (``[key, text, number]``), ``tags`` (``[key, text]``);
- ``metrics``: ``key -> [last, min, max, sum, finite, count, last_step]``; min/max/sum over the
  finite values (None when there is none), ``count`` counts every value, NaN included.

metrics.ndjson is read by the monitoring readers (``load_metrics``: DuckDB or pyarrow, torn last
line and rewinds handled, docs/run-directory.md); only the new bytes of a grown file are parsed
here, by the readers' per-line path.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from codex_ml.rundir.params import flatten_params
from codex_ml.rundir.paths import EVENTS_FILE, METRICS_FILE, PARAMS_FILE, RUN_FILE, SUMMARY_FILE, TAGS_FILE
from codex_ml.rundir.run_files import read_json

__all__ = ["SIGNED_FILES", "merge_stats", "signature", "stats_of", "summarise"]

#: The files an entry depends on; metrics.ndjson's inode is kept too (a recreated file is re-read).
SIGNED_FILES = (METRICS_FILE, RUN_FILE, PARAMS_FILE, TAGS_FILE, SUMMARY_FILE, EVENTS_FILE)
LAST, MIN, MAX, SUM, FINITE, COUNT, LAST_STEP = range(7)
#: New bytes of a grown metrics file read line by line; more than this and the whole file is read again.
_GROW_LIMIT = 8 << 20


def signature(run_dir: Path) -> dict[str, list[int] | None]:
    """``file -> [size, mtime_ns(, inode)]`` (None for a missing file) of the files an entry reads."""
    sig: dict[str, list[int] | None] = {}
    folder = str(run_dir)
    for name in SIGNED_FILES:
        try:
            st = os.stat(os.path.join(folder, name))  # strings: 6 stats a run, Path joins cost more than the stats
        except OSError:
            sig[name] = None
            continue
        sig[name] = [st.st_size, st.st_mtime_ns, st.st_ino] if name == METRICS_FILE else [st.st_size, st.st_mtime_ns]
    return sig


def summarise(run_dir: Path, old: dict[str, Any] | None = None, scanned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The entry of ``run_dir``; ``old`` (its previous entry) lets a grown metrics file be read from where it
    stopped; ``scanned`` is the metrics part ``codex_ml.runs.scan`` computed, used if the file is unchanged since."""
    sig = signature(run_dir)
    entry: dict[str, Any] = {"sig": sig, **_metadata(run_dir)}
    if old is not None and _only_grew(old, sig):
        entry.update(_grow(run_dir, old, sig[METRICS_FILE][0]))
    elif scanned is not None and scanned["sig"] == sig[METRICS_FILE]:
        entry.update({k: v for k, v in scanned.items() if k != "sig"})
    else:
        entry.update(_full(run_dir, sig[METRICS_FILE]))
    if entry["start"] is None and entry["first_time"] is not None:
        entry["start"] = entry["first_time"]  # no run.json: the first record is the best start we have
    return entry


def _only_grew(old: dict[str, Any], sig: dict[str, Any]) -> bool:
    before, now = old["sig"].get(METRICS_FILE), sig[METRICS_FILE]
    if not old.get("complete") or before is None or now is None or old["sig"].get(EVENTS_FILE) != sig[EVENTS_FILE]:
        return False  # a new rewind may supersede records already counted: read it all again
    # Past a few MB of new lines the columnar readers of a whole file beat the per-line parser.
    return now[2] == before[2] and now[0] >= before[0] and old["offset"] <= now[0] < old["offset"] + _GROW_LIMIT


# -- metadata -----------------------------------------------------------------------
def _metadata(run_dir: Path) -> dict[str, Any]:
    run, summary = read_json(run_dir / RUN_FILE), read_json(run_dir / SUMMARY_FILE)
    status = run.get("status") or summary.get("status")
    sessions = run.get("sessions") or []
    start = _number(run.get("created")) or _number(sessions[0] if sessions else None) or _number(summary.get("start_time"))
    end = None if status == "RUNNING" else (_number(run.get("end_time")) or _number(summary.get("end_time")))
    sinks = run.get("sinks") if isinstance(run.get("sinks"), list) else list(summary.get("sinks") or {})
    return {
        "name": str(run.get("run_name") or run.get("name") or summary.get("run_name") or run_dir.name),
        "status": str(status) if status else None,
        "start": start,
        "end": end,
        "sinks": ",".join(str(s) for s in sinks),
        "params": [_param(k, v) for k, v in _flat(read_json(run_dir / PARAMS_FILE)).items()],
        "tags": [[str(k), _text(v)] for k, v in read_json(run_dir / TAGS_FILE).items()],
    }


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return flatten_params(params)
    except TypeError:
        return params


def _param(key: str, value: Any) -> list[Any]:
    return [key, _text(value), _numeric(value)]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _numeric(value: Any) -> float | None:
    """The param as a number: ints, floats and numeric strings ("1e-3" from a config); finite only."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- metrics --------------------------------------------------------------------------
def _full(run_dir: Path, before: list[int] | None) -> dict[str, Any]:
    from codex_ml.monitoring.loading import load_metrics

    empty = {"metrics": {}, "offset": 0, "complete": before is not None and before[0] == 0,
             "first_time": None, "last_time": None}  # fmt: skip
    path = run_dir / METRICS_FILE
    if before is None or before[0] == 0:
        return empty
    try:
        data = load_metrics(path)
    except OSError:
        return {**empty, "complete": False}
    offset, complete = _boundary(path, data, before)
    span = data.time_span
    return {"metrics": stats_of(data), "offset": offset, "complete": complete,
            "first_time": span[0] if span else None, "last_time": span[1] if span else None}  # fmt: skip


def _boundary(path: Path, data: Any, before: list[int]) -> tuple[int, bool]:
    """Where a later read may go on from, and whether it may (see the module docstring)."""
    after = signature(path.parent)[METRICS_FILE]
    if after != before or data.loader == "legacy":
        return 0, False  # the file moved on while it was read (a live run), or has no records to append to
    with open(path, "rb") as handle:
        begin = max(0, before[0] - 65536)
        handle.seek(begin)
        tail = handle.read(before[0] - begin)
    if tail.endswith(b"\n"):
        return before[0], True
    if data.report.torn_tail and b"\n" in tail:  # the torn bytes were not counted: go on from the line start
        return before[0] - (len(tail) - tail.rfind(b"\n") - 1), True
    return 0, False  # a complete last line without its newline was counted: a read from its start would count it twice


def _grow(run_dir: Path, old: dict[str, Any], size: int) -> dict[str, Any]:
    from codex_ml.monitoring.loading import load_lines  # the readers' per-line parser (bad and torn lines)

    path = run_dir / METRICS_FILE
    start = old["offset"]
    with open(path, "rb") as handle:
        handle.seek(start)
        raw = handle.read(size - start)
    data = load_lines(path, raw)
    metrics = merge_stats(old["metrics"], stats_of(data))
    if raw.endswith(b"\n") or not raw:
        offset, complete = start + len(raw), True
    elif data.report.torn_tail:
        offset, complete = start + raw.rfind(b"\n") + 1, True
    else:
        offset, complete = 0, False
    span = data.time_span
    first = old.get("first_time") if old.get("first_time") is not None else (span[0] if span else None)
    last = max((t for t in (old.get("last_time"), span[1] if span else None) if t is not None), default=None)
    return {"metrics": metrics, "offset": offset, "complete": complete, "first_time": first, "last_time": last}


def stats_of(data: Any) -> dict[str, list[Any]]:
    """``key -> [last, min, max, sum, finite, count, last_step]`` of loaded ``MetricsData``."""
    import numpy as np  # here, not at the top: a warm index (nothing to read) never needs it

    out: dict[str, list[Any]] = {}
    for key, series in data.series.items():
        values = series.values
        if not len(values):
            continue
        finite = values[np.isfinite(values)]
        has = len(finite) > 0
        out[key] = [float(values[-1]), float(finite.min()) if has else None, float(finite.max()) if has else None,
                    float(finite.sum()) if has else None, int(len(finite)), int(len(values)), int(series.steps[-1])]
    return out


def merge_stats(old: dict[str, list[Any]], new: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Statistics of old records followed by new ones (``new``'s last value wins)."""
    merged = {key: list(stats) for key, stats in old.items()}
    for key, stats in new.items():
        prior = merged.get(key)
        if prior is None:
            merged[key] = list(stats)
            continue
        prior[LAST], prior[LAST_STEP] = stats[LAST], stats[LAST_STEP]
        prior[MIN] = _pick(min, prior[MIN], stats[MIN])
        prior[MAX] = _pick(max, prior[MAX], stats[MAX])
        prior[SUM] = _pick(lambda a, b: a + b, prior[SUM], stats[SUM])
        prior[FINITE] += stats[FINITE]
        prior[COUNT] += stats[COUNT]
    return merged


def _pick(how: Any, a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else how(a, b)
