"""``export --to tensorboard|mlflow|wandb``: replay a run's NDJSON into a backend, idempotently.

The NDJSON log is the source of truth; a backend may miss points (a sink outage, a sink
switched on late, a disabled sink). Replay reads what the backend already holds, counts
points per ``(metric, step)``, and sends only the occurrences beyond that count, through
the same sink classes that training uses (``codex_ml.backends.<name>``, whose ``History``
says what the backend already holds). Replaying twice
therefore sends nothing the second time, and after an outage exactly the missing points.

- MLflow: the run saved in run.json (same tracking URI), else the run tagged with this
  codex_ml run id in the experiment, else a new run with that tag. Existing points come
  from ``MlflowClient.get_metric_history``; names are mapped as the sink maps them.
- TensorBoard: existing scalars are read from ``<run>/tensorboard`` with TensorBoard's own
  ``EventAccumulator``; missing points go to a new event file in the same folder.
- W&B (offline): existing points are read from every ``run-*.wandb`` file of the run
  (``codex_ml.backends.wandb``); missing points go to the same W&B run id
  (``resume="allow"``), which W&B offline stores as one more ``offline-run-*`` folder.
  ``wandb sync`` uploads all of them. Points uploaded online but not kept locally are not seen.

System telemetry (``system_metrics.jsonl``, wherever the run wrote it) is replayed too, on its
own sample axis; under DDP only rank 0's file, the one training forwards to the sinks.

A run directory moved or copied by hand is first re-anchored (``codex_ml.tracking.relocate``):
its MLflow store and run.json name the old place until then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.backends import BACKENDS, replayable
from codex_ml.monitoring.loading import MetricsData, load
from codex_ml.monitoring.metrics_data import logged_before
from codex_ml.monitoring.runs import SYSTEM, RunSource, UnknownFormatError, read_json, resolve
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink

BATCH = 1000
#: Existing points per backend name: {name: {step: count}}.
Existing = dict[str, dict[int, int]]


@dataclass
class ReplayResult:
    """What a replay found and sent."""

    backend: str
    target: str
    points: int
    already_there: int
    sent: int

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return asdict(self)

    def describe(self) -> str:
        """One line for humans."""
        if self.sent == 0:
            return f"{self.backend} ({self.target}) already has all {self.points:,} points; nothing sent"
        return (f"replayed {self.sent:,} missing points into {self.backend} ({self.target}); "
                f"{self.already_there:,} of {self.points:,} were already there")  # fmt: skip


def missing_points(data: MetricsData, existing: Existing, name: Callable[[str], str] = str) -> list[MetricPoint]:
    """The points of ``data`` beyond what ``existing`` holds, grouped back into records.

    The n-th occurrence (in file order) of ``(metric, step)`` is missing when the backend
    holds fewer than n points for it, so duplicates logged on purpose are kept.
    """
    parts = []
    keys = data.keys()
    for code, key in enumerate(keys):
        series = data.series[key]
        have = existing.get(name(key))
        keep = _beyond(series.steps, have) if have else slice(None)
        rows = series.rows[keep]
        parts.append((rows, np.full(len(rows), code, np.int32), series.steps[keep], series.times[keep], series.values[keep]))
    if not parts:
        return []
    rows, codes, steps, times, values = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.argsort(rows, kind="stable")
    return _group(rows[order], codes[order], steps[order], times[order], values[order], keys)


def _beyond(steps: np.ndarray, have: dict[int, int]) -> np.ndarray:
    """Mask of the occurrences of each step past the number the backend already has."""
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    sizes = np.diff(np.r_[starts, len(steps)])
    rank = np.empty(len(steps), dtype=np.int64)
    rank[order] = np.arange(len(steps)) - np.repeat(starts, sizes)  # 0 for a step's first point
    have_steps = np.fromiter(have.keys(), np.int64, len(have))
    have_counts = np.fromiter(have.values(), np.int64, len(have))
    sort = np.argsort(have_steps)
    have_steps, have_counts = have_steps[sort], have_counts[sort]
    pos = np.minimum(np.searchsorted(have_steps, steps), len(have_steps) - 1)
    already = np.where(have_steps[pos] == steps, have_counts[pos], 0)
    return rank >= already


def _group(rows: np.ndarray, codes: np.ndarray, steps: np.ndarray, times: np.ndarray, values: np.ndarray,
           keys: list[str]) -> list[MetricPoint]:  # fmt: skip
    points: list[MetricPoint] = []
    last_row = -1
    current: dict[str, float] = {}
    for row, code, step, when, value in zip(rows.tolist(), codes.tolist(), steps.tolist(), times.tolist(), values.tolist()):
        if row != last_row:
            current = {}
            points.append((step, when, current))
            last_row = row
        current[keys[code]] = value
    return points


# -- the driver -------------------------------------------------------------------
def replay(path: str | Path, to: str, *, tracking_uri: str | None = None, experiment: str | None = None,
           progress: bool = True, before: float | None = None) -> ReplayResult:  # fmt: skip
    """Replay the run at ``path`` into backend ``to``; see the module docstring.

    ``before`` (a wall time) limits the replay to points logged before it: a resumed session's
    sink process back-fills what earlier sessions logged while the session appends its own.
    """
    if to not in replayable():
        raise UnknownFormatError("replay backend", to, replayable())
    source = _run_source(Path(path))
    if to == "mlflow":
        _repair_moved_store(source)
    metrics = load(source.main, source.kind) if source.kind != SYSTEM else None
    system = [load(p, SYSTEM) for p in ([source.main] if source.kind == SYSTEM else forwarded_system_files(source))]
    if before is not None:
        metrics = logged_before(metrics, before) if metrics is not None else None
        system = [logged_before(s, before) for s in system]
    history = BACKENDS[to].load().History
    backend = history(run_info(source), tracking_uri=tracking_uri, experiment=experiment)
    existing = backend.existing([*(metrics.keys() if metrics else []), *(k for s in system for k in s.keys())])
    todo_metrics = missing_points(metrics, existing, backend.name) if metrics else []
    todo_system = [p for s in system for p in missing_points(s, existing, backend.name)]
    total = sum(len(s) for d in ([metrics] if metrics else []) + system for s in d.series.values())
    sent = sum(len(p[2]) for p in todo_metrics) + sum(len(p[2]) for p in todo_system)
    if sent:
        _send(backend, source, todo_metrics, todo_system, progress)
    return ReplayResult(to, backend.target, total, total - sent, sent)


def forwarded_system_files(source: RunSource) -> list[Path]:
    """The run's system-metrics files whose samples training forwards to the sinks: all but the
    files of DDP ranks k > 0 (those stay in their files; replaying them would mix ranks under one name)."""
    from codex_ml.tracking.system_files import is_rank_file

    return [path for path in source.system_files if not is_rank_file(path)]


def _run_source(path: Path) -> RunSource:
    source = resolve(path)
    if source.run_dir is None:  # a bare file: its folder plays the run directory
        source.run_dir = path.resolve().parent
        source.run_info = read_json(RunPaths(source.run_dir).run_file)
        source.summary = read_json(RunPaths(source.run_dir).summary)
    return source


def _repair_moved_store(source: RunSource) -> None:
    # A run moved or copied by hand still names its old place in mlruns/*/meta.yaml and run.json;
    # re-anchor them here, or the replay would write into (or fail on) the old place's store.
    from codex_ml.tracking.relocate import repair_moved_store

    if source.run_dir is not None and repair_moved_store(source.run_dir):
        source.run_info = read_json(RunPaths(Path(source.run_dir)).run_file)


def run_info(source: RunSource) -> RunInfo:
    """The RunInfo the sinks get: the run's name, id and saved backend state."""
    run_dir = Path(source.run_dir or source.main.parent).resolve()
    run_id = source.run_info.get("run_id") or hashlib.sha1(str(run_dir).encode()).hexdigest()[:32]
    name = source.run_info.get("run_name") or run_dir.name
    return RunInfo(name=name, run_id=run_id, paths=RunPaths(run_dir), resumed=True, backends=dict(source.backends))


def _send(backend: Any, source: RunSource, metrics: list[MetricPoint], system: list[MetricPoint], progress: bool) -> None:
    sink: Sink = backend.sink
    sink.start(backend.info)
    try:
        _write_static(sink, source)
        _write_batches(sink.write_metrics, metrics, progress, "metrics")
        _write_batches(sink.write_system, system, progress, "system metrics")
        sink.flush()
    except BaseException:
        sink.close("FAILED")
        raise
    sink.close(source.summary.get("status") or "FINISHED")


def _write_static(sink: Sink, source: RunSource) -> None:
    # Params and tags: sinks skip what the backend already has (MLflow params are immutable).
    paths = RunPaths(Path(source.run_dir))
    params = read_json(paths.params)
    tags = read_json(paths.tags)
    if params:
        sink.write_params(params)
    if tags:
        sink.write_tags(tags)


def _write_batches(write: Callable[[list[MetricPoint]], None], points: list[MetricPoint], progress: bool, what: str) -> None:
    if not points:
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task(f"replaying {what}", total=len(points))
        for start in range(0, len(points), BATCH):
            write(points[start : start + BATCH])
            bar.advance(task, min(BATCH, len(points) - start))
