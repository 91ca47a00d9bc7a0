"""Telling the user where a run's data went and how to look at it.

Only what is really there is offered: a backend that wrote nothing (W&B disabled, a sink that
never started) gets a line saying so instead of a command that would open an empty or missing
folder. An MLflow server is shown by its URL, never with the credentials the URI may have had.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from codex_ml.tracking.credentials import split_credentials
from codex_ml.tracking.paths import RunPaths

_NOT_STARTED = "nothing was written (the sink did not start; see the [monitoring-error] lines above)"


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def describe_outputs(paths: RunPaths, sinks: list[str]) -> list[str]:
    """Human-readable lines: each output's location and the command that views it."""
    lines = [
        f"Run directory:  {paths.root}",
        f"  metrics log:  {paths.metrics}   (codex_ml's source of truth, NDJSON)",
        f"  summary:      {paths.summary}",
    ]
    backends = _saved_backends(paths)
    if "tensorboard" in sinks:
        lines.append(f"  TensorBoard:  {tensorboard_view_line(paths)}")
    if "mlflow" in sinks:
        lines.append(f"  MLflow:       {mlflow_view_command(paths, backends.get('mlflow'))}")
    if "wandb" in sinks:
        lines.append(wandb_view_line(paths, backends.get("wandb")))
    return lines


def tensorboard_view_line(paths: RunPaths) -> str:
    """The tensorboard command, when the run wrote event files."""
    if not any(paths.tensorboard.glob("events.out.tfevents.*")):
        return _NOT_STARTED
    return f"tensorboard --logdir {_q(paths.tensorboard)} --host 127.0.0.1"


def mlflow_view_command(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """How to open this run in MLflow: its page on a server, or ``mlflow ui`` on a local store that exists."""
    saved = _saved_backends(paths).get("mlflow") if saved is None else saved
    uri = (saved or {}).get("tracking_uri")
    if not uri:
        return _NOT_STARTED
    uri = split_credentials(uri)[0]  # a run.json from an older version may still hold them
    if uri.startswith(("http://", "https://")):
        page = uri.rstrip("/")
        if saved.get("experiment_id") and saved.get("run_id"):
            page += f"/#/experiments/{saved['experiment_id']}/runs/{saved['run_id']}"
        return f"open {page} in a browser"
    store = _local_store(uri)
    if store is None:
        return f"mlflow ui --backend-store-uri {_q(uri)} --host 127.0.0.1 --port 5000"
    if not store.exists():
        return f"nothing at {store} (the store was moved or deleted)"
    prefix = "MLFLOW_ALLOW_FILE_STORE=true " if urlparse(uri).scheme in ("", "file") else ""
    return f"{prefix}mlflow ui --backend-store-uri {_q(uri if prefix == '' else store)} --host 127.0.0.1 --port 5000"


def wandb_view_line(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """Where W&B wrote this run and how to upload it, or why there is nothing."""
    folders = _wandb_folders(paths, saved)
    offline = [f for f in folders if f.name.startswith("offline-run-")]
    online = [f for f in folders if f.name.startswith("run-")]
    if offline:
        target = _q(offline[0]) if len(offline) == 1 else f"{_q(offline[0].parent)}/offline-run-*"
        return f"  W&B (offline): {offline[-1]}   upload later with: wandb sync {target}"
    if online:
        missing = _undelivered(paths, "wandb")
        if missing:
            return (f"  W&B (online): {missing:,} records did not reach W&B; local copy {online[-1]}, "
                    f"upload it later with: wandb sync {_q(online[-1])}")  # fmt: skip
        return f"  W&B (online): synced as it ran; local copy {online[-1]} (if the upload failed: wandb sync {_q(online[-1])})"
    mode = os.environ.get("WANDB_MODE", "")
    if mode == "disabled":
        return "  W&B:          off (WANDB_MODE=disabled), nothing was written"
    return f"  W&B:          {_NOT_STARTED}"


def _wandb_folders(paths: RunPaths, saved: dict[str, Any] | None) -> list[Path]:
    """The run's W&B folders that exist: those under the run directory, else the one run.json names."""
    root = paths.wandb / "wandb"
    found = sorted(p for p in root.glob("*run-*") if p.is_dir()) if root.is_dir() else []
    named = Path(saved["dir"]).parent if saved and saved.get("dir") else None
    return found or ([named] if named is not None and named.is_dir() else [])


def _undelivered(paths: RunPaths, sink: str) -> int:
    """Records summary.json says never reached ``sink`` (0 while the run is open or unknown)."""
    try:
        stats = json.loads(paths.summary.read_text(encoding="utf-8"))["sinks"][sink]
        return int(stats.get("undelivered", 0)) + int(stats.get("dropped", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def _local_store(uri: str) -> Path | None:
    """The file or folder a file:/sqlite: URI keeps its data in (None for other schemes)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "sqlite":
        return Path(unquote(uri.split(":///", 1)[-1])) if ":///" in uri else None
    return None


def _saved_backends(paths: RunPaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    backends = data.get("backends", {}) if isinstance(data, dict) else {}
    return backends if isinstance(backends, dict) else {}
