"""Running a real tiny ``codex-ml train-model`` in a new process, as tests that need a trained run do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
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


def steps_everywhere(run: Path, key: str = "train/loss") -> dict[str, Counter]:
    """How often each step of ``key`` is in the run's NDJSON log, TensorBoard event files, MLflow run
    and W&B offline files, each read with that tool's own reader."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from codex_ml.backends.mlflow_utils import prepare_environment
    from codex_ml.backends.wandb import find_run_files, read_history
    from codex_ml.rundir.reader import iter_records

    ndjson = Counter(r["step"] for r in iter_records(run / "metrics.ndjson") if key in r["metrics"])
    tensorboard: Counter = Counter()
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if key in acc.Tags()["scalars"]:
            tensorboard.update(e.step for e in acc.Scalars(key))
    state = json.loads((run / "run.json").read_text())["backends"]["mlflow"]
    prepare_environment(state["tracking_uri"])
    mlflow = Counter(m.step for m in MlflowClient(state["tracking_uri"]).get_metric_history(state["run_id"], key))
    wandb = Counter(row["step"] for f in find_run_files(run) for row in read_history(f) if key in row)
    return {"ndjson": ndjson, "tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb}
