"""The runs index: every run under an output root as DuckDB tables (docs/runs.md, "The index").

``open_index(root)`` finds the runs (``codex_ml.runs.discover``), takes each run's entry from the
index file when the run's files have not changed since (``codex_ml.runs.cache``), re-reads the
others (``codex_ml.runs.summary``: a metrics file that only grew is read from where the last read
stopped), and saves the index back. ``RunIndex.connect()`` returns an in-memory DuckDB connection
holding the tables the query language is compiled to (``codex_ml.runs.sql``):

    runs(run_id, name, status, start TIMESTAMP (UTC), duration DOUBLE seconds, path, sinks)
    params(run_id, key, value, num)           tags(run_id, key, value)
    metric_stats(run_id, key, last, min, max, mean, count, last_step)

and ``RunIndex.ensure_points(con)`` adds the view ``points(run_id, key, step, value)`` (every
surviving point, read from the NDJSON files when a query needs a value at a step).

Status is run.json's; a run it calls RUNNING whose lock nobody holds (its process died without
closing it, docs/run-directory.md) is shown as ``RUNNING?``. The lock is probed at every open,
so a run that dies shows up at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.rundir.paths import METRICS_FILE
from codex_ml.runs.cache import load_entries, save_entries
from codex_ml.runs.discover import find_runs, run_id_of
from codex_ml.runs.summary import signature, summarise

__all__ = ["STALE_RUNNING", "RunIndex", "RunsRootError", "open_index"]

#: The status of a run whose run.json says RUNNING but whose writer is gone.
STALE_RUNNING = "RUNNING?"
#: Re-reading more than this many runs, and this many bytes (or ten times the runs), shows progress on stderr.
_MANY_RUNS, _MANY_BYTES = 16, 64 << 20
#: From this many runs to read whole, they are summarised by one DuckDB query (codex_ml.runs.scan).
_SCAN_FROM = 4


class RunsRootError(CodexMLError, ValueError):
    """An output root that is missing, not a folder, or holds no run."""

    def __init__(self, root: Path, why: str) -> None:
        super().__init__(f"{root}: {why}. Give the folder that holds your runs, e.g. runs, sweeps/<sweep> or a "
                         "pipeline's output folder (each run is a folder with a metrics.ndjson or run.json).")


@dataclass
class RunIndex:
    """The entries of every run under ``root`` (``run_id -> entry``) and what opening it cost."""

    root: Path
    entries: dict[str, dict[str, Any]]
    dirs: dict[str, Path]
    reread: int = 0
    saved: bool = False
    status: dict[str, str | None] = field(default_factory=dict)

    def connect(self) -> Any:
        """A fresh in-memory DuckDB connection holding the runs, params, tags and metric_stats tables."""
        import duckdb

        from codex_ml.runs.tables import create_tables

        con = duckdb.connect(config={"autoinstall_known_extensions": False})  # never fetch an extension at run time
        con.execute("SET enable_progress_bar = false")  # DuckDB would draw one on stdout for a long scan
        create_tables(con, self)
        return con

    def ensure_points(self, con: Any, keys: Iterable[str] | None = None) -> None:
        """Create the view ``points(run_id, key, step, value)`` on ``con``: every metric (once per
        connection), or only ``keys``, read from only the runs that logged one (much faster)."""
        from codex_ml.runs.tables import create_points

        create_points(con, self, keys)

    def duration(self, run_id: str) -> float | None:
        """Seconds from start to end; a run still writing: to now; a dead one: to its last record."""
        entry = self.entries[run_id]
        start = entry.get("start")
        if start is None:
            return None
        if entry.get("end") is not None:
            return entry["end"] - start
        if self.status.get(run_id) == "RUNNING":
            return time.time() - start
        return entry["last_time"] - start if entry.get("last_time") is not None else None


def open_index(root: str | os.PathLike[str], *,
               progress: Callable[[str], AbstractContextManager[Any]] | None = None) -> RunIndex:  # fmt: skip
    """Find every run under ``root`` and bring its entry up to date (docs/runs.md).

    ``progress(message)`` is entered while many runs are read (a rich status, say). Raises
    RunsRootError when ``root`` is not a folder; a root without runs gives an empty index.
    """
    root = Path(root)
    if not root.is_dir():
        raise RunsRootError(root, "no such folder" if not root.exists() else "not a folder")
    dirs = {run_id_of(d, root): d for d in find_runs(root)}
    stored = load_entries(root)
    entries, todo = {}, []
    for run_id, run_dir in dirs.items():
        old = stored.get(run_id)
        if old is not None and old.get("sig") == signature(run_dir):
            entries[run_id] = old
        else:
            todo.append((run_id, run_dir, old))
    entries.update(_summarise_all(todo, progress))
    index = RunIndex(root, dict(sorted(entries.items())), dirs, reread=len(todo))
    if todo or set(stored) != set(entries):
        index.saved = save_entries(root, index.entries)
    index.status = {run_id: _live_status(dirs[run_id], e.get("status")) for run_id, e in index.entries.items()}
    return index


def _summarise_all(todo: list[tuple[str, Path, Any]], progress: Any) -> dict[str, dict[str, Any]]:
    size = sum(_metrics_size(run_dir) for _, run_dir, _ in todo)
    slow = len(todo) > _MANY_RUNS and (size > _MANY_BYTES or len(todo) > 10 * _MANY_RUNS)
    with progress(f"indexing {len(todo)} runs ({size / 1e6:,.0f} MB of metrics)") if slow and progress else nullcontext():
        # One DuckDB query for the runs read whole: ten times faster than a reader per file for
        # small files, about three times for large ones. A run that only grew is read from its offset.
        from codex_ml.runs.scan import scan_runs  # numpy and DuckDB: only when there is something to read

        whole = [d for _, d, old in todo if old is None or not old.get("complete")]
        scanned = scan_runs(whole) if len(whole) >= _SCAN_FROM else {}
        return {run_id: summarise(run_dir, old, scanned.get(run_dir)) for run_id, run_dir, old in todo}


def _metrics_size(run_dir: Path) -> int:
    try:
        return (run_dir / METRICS_FILE).stat().st_size
    except OSError:
        return 0


def _live_status(run_dir: Path, status: str | None) -> str | None:
    if status != "RUNNING":
        return status
    from codex_ml.tracking.run_lock import holder_of

    return status if holder_of(run_dir) is not None else STALE_RUNNING
