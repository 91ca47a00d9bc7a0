"""Opening the tracking run of a training session, rank-aware.

Rank 0 opens the run with every sink (and, on a single process, the tracking core starts the
system-metrics sampler next to the checkpoints). Other ranks wait until rank 0 has opened the
run (so they never write into a directory rank 0 then refuses), and log to a NullRun (with
``--prometheus-port``, one that serves the rank's own exporter: rank_exporter.py). Under
DDP each rank samples its own system metrics with its rank in every record: rank 0 into the
configured file, rank k into ``system_metrics.rank<k>.jsonl`` beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist

from codex_ml.tracking.config import TrackingConfig
from codex_ml.rundir.paths import RunPaths
from codex_ml.training.distributed import DistInfo
from codex_ml.training.errors import TrainingError
from codex_ml.training.rank_exporter import RankRun, rank_run

__all__ = ["open_run", "rank_file", "run_name_for"]


def run_name_for(tracking: TrackingConfig, info: DistInfo) -> str:
    """The run name, generated once on rank 0 and shared, so all ranks agree."""
    from codex_ml.rundir.paths import default_run_name

    name = tracking.run_name or default_run_name()
    if info.enabled:
        box = [name]
        dist.broadcast_object_list(box, src=0)
        name = box[0]
    return name


def rank_file(path: Path, rank: int) -> Path:
    """``system_metrics.jsonl`` -> ``system_metrics.rank<k>.jsonl`` for rank k > 0."""
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def open_run(trainer: Any) -> Any:
    """Open ``trainer``'s run on rank 0 (NullRun elsewhere) and start per-rank system metrics."""
    from codex_ml.tracking import start_run

    info: DistInfo = trainer.info
    tracking: TrackingConfig = trainer.tracking
    checkpoint_dir = RunPaths(trainer.run_dir).checkpoints
    core = tracking.replace(system_metrics=None) if info.enabled else tracking
    run: Any = None
    error: BaseException | None = None
    if info.is_main:
        try:
            run = start_run(tracking.run_name, config=core, resume=trainer.resume is not None,
                            params=trainer._params(), tags={"job": "train-model"}, checkpoint_dir=checkpoint_dir,
                            health=trainer.health)
        except BaseException as exc:  # tell the other ranks before raising, or they wait forever
            error = exc
    if info.enabled:
        box = [error is None]
        dist.broadcast_object_list(box, src=0)
        if not box[0] and error is None:
            raise TrainingError("rank 0 could not open the run (see its error above)")
    if error is not None:
        raise error
    if not info.is_main:  # a NullRun, serving this rank's own Prometheus exporter when one is asked for
        run = rank_run(tracking, trainer.run_dir)
    elif trainer.resume is not None:
        run = _skip_logged_steps(run, trainer)
    if info.enabled and tracking.system_metrics:
        _start_rank_sampler(run, tracking, checkpoint_dir, info)
    from codex_ml.training.heartbeats import attach

    return attach(run, trainer)  # under torchrun every rank beats; rank 0 scores stragglers, names a hung rank


class ReplayFilter:
    """A run wrapper that drops records for steps a crashed session already logged.

    After a crash, the steps between the last checkpoint and the crash are trained again;
    their records are already in metrics.ndjson (the same values on a deterministic CPU
    run), so logging them twice would duplicate steps.
    """

    def __init__(self, run: Any, logged_through: int) -> None:
        self._run = run
        self.logged_through = logged_through

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Forward unless ``step`` was logged before the crash."""
        if step is None or step > self.logged_through:
            self._run.log_metrics(metrics, step)

    def log_histogram(self, name: str, values: Any, step: int | None = None) -> None:
        """Forward unless ``step`` was logged before the crash."""
        if step is None or step > self.logged_through:
            self._run.log_histogram(name, values, step)

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Forward unless ``step`` was logged before the crash."""
        if step is None or step > self.logged_through:
            self._run.log_text(name, text, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_run", "logged_through"):
            object.__setattr__(self, name, value)
        else:  # e.g. run.system_metrics: set it on the real run, which stops it on close
            setattr(self._run, name, value)


def _skip_logged_steps(run: Any, trainer: Any) -> Any:
    """Wrap ``run`` so steps an earlier session logged are not logged twice; say what happens (one line)."""
    from codex_ml.rundir.reader import last_step

    start, logged = trainer.start_step, last_step(run.paths.metrics)
    again = f"steps {start + 1}..{logged}" if logged is not None and logged > start else ""
    if trainer.resume.restart:
        print(f"[train] {trainer.run_dir} has no checkpoint (it stopped before its first one): training restarts "
              "from step 0 in the same run" + (f"; {again}, logged before, are trained again but not logged twice"
                                               if again else ""), file=sys.stderr)
    elif again:
        print(f"[train] {again} were logged before the interruption; they are trained again from the checkpoint "
              "but not logged twice", file=sys.stderr)
    # A restart evaluates step 0 again, so its val loss is also dropped when already logged.
    return ReplayFilter(run, logged) if logged is not None and (again or trainer.resume.restart) else run


def _start_rank_sampler(run: Any, tracking: TrackingConfig, checkpoint_dir: Path, info: DistInfo) -> None:
    from codex_ml.monitoring.system_metrics import SystemMetricsLogger, resolve_system_metrics_path

    path = resolve_system_metrics_path(tracking.system_metrics, checkpoint_dir)
    if path is None:
        return
    # Rank 0 forwards to its sinks; rank k to its own exporter when it serves one (rank_exporter.RankRun).
    forward = run if info.is_main or isinstance(run, RankRun) else None
    if info.is_main:  # the readers find every rank's file beside the one run.json records
        from codex_ml.tracking.run import record_system_metrics_file

        record_system_metrics_file(run.paths, path)
    # The run stops it on close (Run.close and NullRun.close both stop run.system_metrics).
    run.system_metrics = SystemMetricsLogger(rank_file(path, info.rank), tracking.system_metrics_interval,
                                             run=forward, rank=info.rank,
                                             collector_names=tracking.system_metrics_collectors).start()
