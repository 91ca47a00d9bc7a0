"""Two CPU processes under torchrun (gloo): rank 0 owns the run, losses are averaged over ranks,
every rank records its own system metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from codex_ml.training import components as build
from codex_ml.training.batches import RandomWindows
from codex_ml.training.checkpoints import load_checkpoint
from codex_ml.training.config import load_config
from trainer_helpers import TINY, records, series

REPO = Path(__file__).resolve().parents[2]
STEPS = 60


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "codex_ml.cli", "train-model", "--no-progress", "--output-root", str(tmp_path), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _first_batch_loss(rank: int) -> float:
    """What rank ``rank`` computes at step 1: same initial weights, its own batch stream."""
    config = load_config(overrides=TINY)
    torch.manual_seed(config.training.seed)
    data = build.prepare_data(config)
    model = build.build_model(config, data.tokenizer.vocab_size)
    windows = RandomWindows(data.train, config.training.batch_size, config.model.block_size,
                            config.training.seed + 7919 * rank)
    with torch.no_grad():
        return model(*windows.next())[1].item()


def test_two_process_gloo_training(tmp_path: Path) -> None:
    """torchrun --nproc_per_node=2 on CPU: one run directory, averaged losses, per-rank telemetry."""
    done = _torchrun(tmp_path, "--run-name", "ddp", "--enable-tensorboard", "--system-metrics",
                     "--system-metrics-interval", "0.1", *TINY, f"training.max_steps={STEPS}")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    assert [s for s, _ in series(run, "train/loss")] == list(range(1, STEPS + 1))  # rank 0 alone logs
    expected = (_first_batch_loss(0) + _first_batch_loss(1)) / 2
    assert abs(series(run, "train/loss")[0][1] - expected) < 1e-4
    assert abs(series(run, "train/loss")[0][1] - _first_batch_loss(0)) > 1e-4  # not just rank 0's loss
    params = json.loads((run / "params.json").read_text())
    assert params["distributed.world_size"] == 2
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    sampled = {rank: records(run / "checkpoints" / name) for rank, name in
               ((0, "system_metrics.jsonl"), (1, "system_metrics.rank1.jsonl"))}
    for rank, rows in sampled.items():
        assert rows and all(row["rank"] == rank for row in rows)
    # Readers find every rank's samples through run.json's record (rank files sit beside rank 0's).
    assert json.loads((run / "run.json").read_text())["system_metrics"] == ["checkpoints/system_metrics.jsonl"]
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert not torch.equal(state["ranks"][0]["batches"]["generator"], state["ranks"][1]["batches"]["generator"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # no rank wrote anywhere else


def test_sigterm_to_torchrun_checkpoints_every_rank_at_one_step(tmp_path: Path) -> None:
    """SIGTERM to torchrun (what a scheduler sends) before the first checkpoint: the ranks agree on one
    step, rank 0 checkpoints it with both ranks' states, and the run ends KILLED."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "codex_ml.cli", "train-model", "--no-progress", "--output-root", str(tmp_path), "--run-name", "term",
           *TINY, "training.max_steps=5000", "training.checkpoint_interval=1000", "training.eval_interval=1000",
           "training.histogram_interval=1000", "training.sample_interval=1000", "tracking.flush_interval=0.05"]
    err = (tmp_path / "err.txt").open("w+")
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    metrics, deadline = tmp_path / "term" / "metrics.ndjson", time.monotonic() + 120
    while not metrics.exists() or max((r["step"] for r in records(metrics)), default=0) < 3:
        assert job.poll() is None and time.monotonic() < deadline, err.seek(0) or err.read()[-3000:]
        time.sleep(0.05)
    assert not (tmp_path / "term" / "checkpoints" / "latest.pt").exists()
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=120)
    err.seek(0)
    text = err.read()
    run = tmp_path / "term"
    assert json.loads((run / "run.json").read_text())["status"] == "KILLED", text[-3000:]
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert len(state["ranks"]) == 2 and state["step"] >= 3
    assert f"[train] SIGTERM: stopped after step {state['step']} with a checkpoint" in text
    assert series(run, "train/loss")[-1][0] == state["step"]
