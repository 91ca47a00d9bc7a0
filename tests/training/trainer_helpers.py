"""Shared helpers for the trainer tests: tiny configs and readers of a run directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codex_ml.tracking.config import TrackingConfig
from codex_ml.training.config import TrainConfig, load_config

#: A model and schedule small enough that a few dozen steps take about a second on a CPU.
TINY = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
    "training.batch_size=4", "training.warmup_steps=3", "training.eval_interval=5", "training.eval_batches=2",
    "training.histogram_interval=5", "training.sample_interval=10", "training.sample_tokens=10",
    "training.checkpoint_interval=5", "training.progress=false",
]


def tiny_config(*overrides: str) -> TrainConfig:
    """The tiny config with ``overrides`` applied."""
    return load_config(overrides=[*TINY, *overrides])


def tracking_for(root: Path, name: str, **options: Any) -> TrackingConfig:
    """A tracking config writing ``root/name`` with a fast flush."""
    return TrackingConfig(output_root=str(root), run_name=name, flush_interval=0.05, **options)


def records(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of an NDJSON file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of ``key`` in the run's metrics.ndjson, in file order."""
    return [(r["step"], r["metrics"][key]) for r in records(run_dir / "metrics.ndjson") if key in r["metrics"]]


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``directory`` (to prove nothing changed)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}
