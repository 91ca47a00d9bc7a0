"""Hostile metric keys through every sink: verbatim in the NDJSON, a legal and deterministic
name in each backend, read back with that backend's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.tracking import start_run
from codex_ml.backends.names import mlflow_name
from codex_ml.rundir.reader import read_metrics
from codex_ml.backends.wandb import find_run_files, read_history

HOSTILE_KEYS = [
    "loss@gpu:0", "a,b", "f(x)", "train/loss", "with space", "ünïcödé/λ", "emoji 🚀", "..", "a/../b", "/leading",
    "nul\x00byte", "new\nline", "x" * 250, "y" * 251, "z" * 10_000,
]  # fmt: skip


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    os.environ.setdefault("WANDB_SILENT", "true")
    root = tmp_path_factory.mktemp("hostile")
    with start_run("hostile", output_root=root, enable_tensorboard=True, enable_mlflow=True, enable_wandb=True,
                   flush_interval=0.05) as run:  # fmt: skip
        for step in range(3):
            run.log_metrics({key: float(i * 10 + step) for i, key in enumerate(HOSTILE_KEYS)}, step=step)
    return run.paths.root


def test_ndjson_keeps_every_key_verbatim(hostile_run: Path) -> None:
    records = read_metrics(hostile_run / "metrics.ndjson")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert list(records[2]["metrics"]) == HOSTILE_KEYS
    assert records[2]["metrics"]["z" * 10_000] == 142.0
    raw = (hostile_run / "metrics.ndjson").read_bytes()
    assert raw.count(b"\n") == 3  # a newline inside a key is escaped, never a line break


def test_tensorboard_gets_every_key(hostile_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(hostile_run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert len(tags) == len(HOSTILE_KEYS)
    assert all(len(acc.Scalars(tag)) == 3 for tag in tags)


def test_mlflow_gets_a_legal_deterministic_name_for_every_key(hostile_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    state = json.loads((hostile_run / "run.json").read_text())["backends"]["mlflow"]
    prepare_environment(state["tracking_uri"])
    client = MlflowClient(state["tracking_uri"])
    stored = client.get_run(state["run_id"]).data.metrics
    assert len(stored) == len(HOSTILE_KEYS)  # no two keys merged, none lost
    for i, key in enumerate(HOSTILE_KEYS):
        name = state.get("key_map", {}).get(key, mlflow_name(key))
        assert name == mlflow_name(key) or name.startswith(mlflow_name(key)[:200])
        assert stored[name] == float(i * 10 + 2)
        assert [m.step for m in client.get_metric_history(state["run_id"], name)] == [0, 1, 2]


def test_wandb_offline_history_has_every_key(hostile_run: Path) -> None:
    (run_file,) = find_run_files(hostile_run)
    rows = [row for row in read_history(run_file) if row.get("_step") == 2]
    assert rows, "no history row for step 2"
    seen = {k: v for row in rows for k, v in row.items()}
    # W&B accepts any string key, so every key is stored verbatim with its value.
    assert {key: seen.get(key) for key in HOSTILE_KEYS} == {key: float(i * 10 + 2) for i, key in enumerate(HOSTILE_KEYS)}
