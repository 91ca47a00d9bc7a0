"""Stage checkpoints and the ``stage.json`` marker that makes a finished stage skippable.

``checkpoints/<STAGE>/`` holds the checkpoint written by
:func:`codex_ml.training.checkpoints.save_checkpoint` (atomic) and, written last,
``stage.json``: the stage's fingerprint (its config, seed, inputs and upstream
checkpoints), the checkpoint's SHA-256 and its results. A stage is reused only when the
marker exists, the fingerprint matches and the checkpoint's bytes hash to the recorded
value; a crash before the marker is written leaves the stage to be trained again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codex_ml.pipeline.inputs import sha256_file
from codex_ml.rundir.run_files import write_json_atomic

__all__ = ["MARKER_FILE", "fingerprint", "read_verified_marker", "save_stage", "stage_state"]

MARKER_FILE = "stage.json"


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of a JSON-able description of what a stage's result depends on."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def read_verified_marker(directory: Path, expected: str) -> tuple[dict[str, Any] | None, str]:
    """``(marker, "")`` when the stage in ``directory`` verifies, else ``(None, why not)``."""
    marker_path = directory / MARKER_FILE
    if not marker_path.is_file():
        return None, "no finished checkpoint"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return None, f"unreadable {MARKER_FILE} ({err})"
    if marker.get("fingerprint") != expected:
        return None, "config, seed, inputs or an earlier stage changed"
    checkpoint = directory / str(marker.get("checkpoint", ""))
    if not checkpoint.is_file() or sha256_file(checkpoint) != marker.get("sha256"):
        return None, "checkpoint file missing or changed"
    return marker, ""


def save_stage(directory: Path, state: dict[str, Any], step: int, marker: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write the checkpoint, then the marker (the commit point); returns (checkpoint, marker)."""
    from codex_ml.training.checkpoints import save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER_FILE).unlink(missing_ok=True)
    path = save_checkpoint(directory, state, step=step, keep_last=1)
    full = {**marker, "checkpoint": path.name, "sha256": sha256_file(path)}
    write_json_atomic(directory / MARKER_FILE, full)
    return path, full


def stage_state(directory: Path, marker: dict[str, Any]) -> dict[str, Any]:
    """The saved state dict of a verified stage."""
    from codex_ml.training.checkpoints import load_checkpoint

    return load_checkpoint(directory / marker["checkpoint"])
