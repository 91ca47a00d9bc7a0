"""Telling the user where a run's data went and how to look at it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from codex_ml.tracking.paths import RunPaths


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def describe_outputs(paths: RunPaths, sinks: list[str]) -> list[str]:
    """Human-readable lines: each output's location and the command that views it."""
    lines = [
        f"Run directory:  {paths.root}",
        f"  metrics log:  {paths.metrics}   (codex_ml's source of truth, NDJSON)",
        f"  summary:      {paths.summary}",
    ]
    if "tensorboard" in sinks:
        lines.append(f"  TensorBoard:  tensorboard --logdir {_q(paths.tensorboard)} --host 127.0.0.1")
    if "mlflow" in sinks:
        lines.append(f"  MLflow:       {mlflow_view_command(paths)}")
    if "wandb" in sinks:
        lines.append(f"  W&B (offline): {paths.wandb / 'wandb'}   upload later with: wandb sync {_q(paths.wandb / 'wandb')}/offline-run-*")
    return lines


def mlflow_view_command(paths: RunPaths) -> str:
    """The command that opens the MLflow UI on this run's store (or the server's URL)."""
    uri = _saved_mlflow_uri(paths)
    if uri and uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    store = paths.mlruns if not uri else uri
    return f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {_q(store)} --host 127.0.0.1 --port 5000"


def _saved_mlflow_uri(paths: RunPaths) -> str | None:
    try:
        data = json.loads(paths.run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("backends", {}).get("mlflow", {}).get("tracking_uri")
