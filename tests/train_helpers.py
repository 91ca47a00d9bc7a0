"""Running a real tiny ``codex-ml train-model`` in a new process, as tests that need a trained run do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "training" / "tiny.yaml")


def train_tiny(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m codex_ml.cli train-model --config configs/training/tiny.yaml --no-progress ARGS`` in
    ``cwd``, W&B offline and quiet, no inherited MLflow URI; fails the test unless it exits 0."""
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "codex_ml.cli", "train-model", "--config", TINY, "--no-progress", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done
