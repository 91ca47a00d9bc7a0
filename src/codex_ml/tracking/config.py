"""TrackingConfig: every knob of a run, with the defaults documented in docs/tracking.md."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from codex_ml import env

DEFAULT_OUTPUT_ROOT = "runs"
DEFAULT_EXPERIMENT = "codex_ml"
DEFAULT_WANDB_PROJECT = "codex_ml"


@dataclass
class TrackingConfig:
    """Which sinks a run writes to and how its background writer behaves."""

    run_name: str | None = None
    output_root: str = field(default_factory=lambda: os.environ.get(env.CODEX_OUTPUT_ROOT, DEFAULT_OUTPUT_ROOT))
    enable_tensorboard: bool = False
    enable_mlflow: bool = False
    #: None means the local store ``runs/<run>/mlruns``; file:, sqlite: and http(s): URIs work.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = DEFAULT_EXPERIMENT
    enable_wandb: bool = False
    #: None means $WANDB_PROJECT, else "codex_ml".
    wandb_project: str | None = None
    #: Seconds between writes of the NDJSON log: a crash loses at most this much.
    flush_interval: float = 1.0
    #: fsync after every write (survives power loss, costs a disk sync per interval).
    fsync: bool = False
    #: Records the hot path may queue before it waits for the writer (backpressure).
    max_queue: int = 200_000
    #: Records a slow sink may lag behind before new ones are dropped for that sink.
    sink_max_pending: int = 500_000
    #: Consecutive failures after which a sink is disabled.
    sink_max_failures: int = 5
    #: Seconds close() waits for sinks to drain before reporting what did not make it.
    close_timeout: float = 30.0
    histogram_bins: int = 64
    #: None (off), "AUTO" (<checkpoint_dir>/system_metrics.jsonl) or a path (relative to the checkpoint dir).
    system_metrics: str | None = None
    system_metrics_interval: float = 15.0
    #: Serve /metrics for Prometheus on this port (None: off).
    prometheus_port: int | None = None
    prometheus_addr: str = "127.0.0.1"
    prometheus_pushgateway: str | None = None
    #: On resume, first replay into TensorBoard/MLflow/W&B the points of the NDJSON they miss
    #: (e.g. after a crash or an outage), so every sink holds every step exactly once.
    backfill_on_resume: bool = True
    #: Names of registered sink plugins to add (``codex-ml plugins list sinks``); the
    #: built-ins tensorboard/mlflow/wandb/prometheus are the same as their enable flags.
    extra_sinks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.extra_sinks = _sink_names(self.extra_sinks)
        if self.flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {self.flush_interval}")
        if self.max_queue < 1 or self.sink_max_pending < 1:
            raise ValueError("max_queue and sink_max_pending must be >= 1")
        if self.prometheus_port is not None and not 0 <= self.prometheus_port <= 65535:
            raise ValueError(f"prometheus_port must be 0-65535, got {self.prometheus_port}")
        if self.close_timeout < 0:
            raise ValueError(f"close_timeout must be >= 0, got {self.close_timeout}")

    def replace(self, **changes: Any) -> TrackingConfig:
        """A copy with ``changes`` applied; unknown names raise TypeError listing valid ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown tracking option(s) {unknown}; valid: {sorted(known)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return TrackingConfig(**values)

    def resolved_wandb_project(self) -> str:
        """The W&B project: explicit, else $WANDB_PROJECT, else the default."""
        return self.wandb_project or os.environ.get(env.WANDB_PROJECT) or DEFAULT_WANDB_PROJECT


def _sink_names(value: Any) -> list[str]:
    """``extra_sinks`` as a list of names; one string (e.g. from YAML) is one name."""
    names = [value] if isinstance(value, str) else list(value or [])
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"extra_sinks must be sink plugin names, got {name!r}")
    return [name.strip() for name in names]
