"""What ``runs compare`` compares, as plain data: the runs, their differing params, metric statistics.

``codex_ml.runs.compare`` prints it (``compare_render``) and draws it (``compare_plot``). Three views
of the same runs, read from their files only (docs/run-directory.md):

- the params that differ (params.json, flattened; a param one run lacks differs, shown as "—"),
- per compared metric, each run's last / min / max (min and max over finite values, as the
  runs index computes them; ``last`` is the last point logged, NaN included),
- with ``-o``, one image: a panel per metric, the runs' curves overlaid (``compare_plot``).

Metrics are read with the monitoring loader, so a run rewound by a health rollback shows its
surviving timeline (``codex_ml.rundir.rewinds``), each step once. The default metrics are those
every run logged (losses first, at most :data:`MAX_DEFAULT_METRICS`; the rest are named).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.monitoring.loading import load
from codex_ml.monitoring.metrics_data import MetricsData, Series
from codex_ml.monitoring.plot import choose_metrics
from codex_ml.monitoring.runs import EmptyInputError
from codex_ml.rundir.params import flatten_params
from codex_ml.runs.params_diff import ABSENT, MISSING, differing
from codex_ml.rundir.paths import METRICS_FILE, RUN_FILE, RunPaths
from codex_ml.rundir.run_files import read_json

__all__ = ["ABSENT", "MAX_DEFAULT_METRICS", "MISSING", "CompareError", "ComparedRun", "comparison",
           "differing_params", "metric_stats", "open_runs", "pick_metrics"]  # fmt: skip

#: Metrics compared when --metric is not given: the first ones every run logged (losses first).
MAX_DEFAULT_METRICS = 6


class CompareError(CodexMLError, ValueError):
    """A ``runs compare`` request that cannot be answered: too few runs, a path that is no run, an unknown metric."""

    def __init__(self, why: str) -> None:
        super().__init__(f"runs compare: {why}")


@dataclass
class ComparedRun:
    """One run being compared: where it is, its label in tables and legends, its params and metrics."""

    path: Path
    name: str
    status: str | None
    params: dict[str, Any]
    data: MetricsData | None  # None: the run has logged no metrics yet
    label: str = ""

    def keys(self) -> list[str]:
        """The run's metric names, in order of first appearance."""
        return self.data.keys() if self.data is not None else []

    def series(self, key: str) -> Series | None:
        """The surviving points of one metric (None when the run never logged it)."""
        series = self.data.series.get(key) if self.data is not None else None
        return series if series is not None and len(series) else None


def open_runs(paths: list[Path]) -> list[ComparedRun]:
    """Read every run (params, status, surviving metrics) and give each a distinct label.

    A label is the run's name; runs sharing a name are labelled with the path given instead.
    """
    if len(paths) < 2:
        given = f"got only {paths[0]}" if paths else "got none"
        raise CompareError(f"needs at least two run directories, {given} (e.g. codex-ml runs compare runs/a runs/b)")
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        first = seen.setdefault(path.resolve(), path)
        if first is not path:
            raise CompareError(f"{path}: the same run is given twice ({first} and {path})")
    runs = [_open(Path(path)) for path in paths]
    names = [run.name for run in runs]
    for run in runs:
        run.label = str(run.path) if names.count(run.name) > 1 else run.name
    return runs


def _open(path: Path) -> ComparedRun:
    if not path.exists():
        raise CompareError(f"{path}: no such run directory")
    paths = RunPaths(path)
    if not path.is_dir() or not (paths.metrics.exists() or paths.run_file.exists()):
        raise CompareError(f"{path}: not a run directory (a run directory holds {METRICS_FILE} or {RUN_FILE}; "
                           f"codex-ml runs list {path} finds the runs under a folder)")
    info = read_json(paths.run_file)
    data = None
    if paths.metrics.exists():
        try:
            data = load(paths.metrics)
        except EmptyInputError:
            data = None  # a run that is starting: it has params but no points yet
    params = read_json(paths.params)
    return ComparedRun(path, str(info.get("name") or path.name), info.get("status"), flatten_params(params), data)


def pick_metrics(runs: list[ComparedRun], requested: list[str]) -> tuple[list[str], list[str]]:
    """``(compared, left_out)``: the metrics matching ``requested`` (exact names or globs such as
    ``val/*``), else those every run logged, at most :data:`MAX_DEFAULT_METRICS` (the rest left out)."""
    logged = list(dict.fromkeys(key for run in runs for key in run.keys()))
    if requested:
        chosen: list[str] = []
        for pattern in requested:
            hits = [key for key in logged if fnmatch.fnmatchcase(key, pattern)]
            if not hits:
                raise CompareError(f"--metric {pattern!r}: no run has it (their metrics: {_some(logged)})")
            chosen += hits
        return list(dict.fromkeys(chosen)), []
    shared = choose_metrics([key for key in logged if all(key in run.keys() for run in runs)], None)
    return shared[:MAX_DEFAULT_METRICS], shared[MAX_DEFAULT_METRICS:]


def _some(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit]) or "none"
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def differing_params(runs: list[ComparedRun]) -> dict[str, list[Any]]:
    """Every param (sorted) whose value is not the same in all runs: its value per run, in run order,
    :data:`ABSENT` for a run without it. Numbers compare by value (1 and 1.0 are the same)."""
    return differing([run.params for run in runs])


def metric_stats(series: Series | None) -> dict[str, Any] | None:
    """last (the last point logged, NaN included) and its step, min and max over the finite values,
    the number of points and how many were NaN/Inf; None for a run without the metric."""
    if series is None:
        return None
    import numpy as np

    finite = series.values[np.isfinite(series.values)]
    return {
        "last": float(series.values[-1]),
        "last_step": int(series.steps[-1]),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "points": len(series),
        "non_finite": int(len(series) - finite.size),
    }


def comparison(runs: list[ComparedRun], metrics: list[str], left_out: list[str]) -> dict[str, Any]:
    """The comparison as plain data (what --json prints): runs, differing params and metric
    statistics keyed by run label (a run without a param or metric is left out of its object)."""
    return {
        "runs": [{"label": run.label, "name": run.name, "path": str(run.path), "status": run.status} for run in runs],
        "params": {key: {run.label: value for run, value in zip(runs, values) if value is not ABSENT}
                   for key, values in differing_params(runs).items()},  # fmt: skip
        "metrics": {key: {run.label: stats for run in runs if (stats := metric_stats(run.series(key))) is not None}
                    for key in metrics},  # fmt: skip
        "metrics_left_out": left_out,
    }
