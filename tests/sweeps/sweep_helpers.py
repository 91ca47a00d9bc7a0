"""Shared by the sweep tests: run the Hydra CLI in a scratch directory, read trials back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Tiny trials: a 1-layer model, evaluated and checkpointed every 5 steps, no samples or histograms.
FAST = ["training=tiny", "training.eval_interval=5", "training.checkpoint_interval=5", "training.progress=false",
        "training.sample_interval=1000", "training.histogram_interval=1000", "training.eval_batches=2"]


def cli(*args: str) -> list[str]:
    """The command line of ``python -m codex_ml.cli.main ARGS``."""
    return [sys.executable, "-m", "codex_ml.cli.main", *args]


def clean_env() -> dict[str, str]:
    """This process's environment without settings that would send runs elsewhere."""
    drop = ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR", "CODEX_OUTPUT_ROOT")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI to the end in ``cwd``."""
    return subprocess.run(cli(*args), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300)


def run_json(run_dir: Path) -> dict[str, Any]:
    """A trial's run.json."""
    return json.loads((run_dir / "run.json").read_text())


def metric_points(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of ``key`` in the trial's metrics.ndjson, in file order."""
    out = []
    for line in (run_dir / "metrics.ndjson").read_text().splitlines():
        record = json.loads(line)
        if key in record.get("metrics", {}):
            out.append((record["step"], float(record["metrics"][key])))
    return out
