"""SIGKILL a real training job at random points, then --resume it: every file still reads,
and every sink ends with each training step exactly once.

CI runs a few trials (seeded, so reproducible); ``-m slow`` runs 20 more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from codex_ml.rundir.reader import ReadReport, iter_records
from codex_ml.backends.wandb import find_run_files, read_history
from train_helpers import steps_everywhere

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "training" / "tiny.yaml")
MAX_STEPS = 40
SETTINGS = ["training.eval_interval=10", "training.checkpoint_interval=5", "training.eval_batches=2",
            "training.sample_interval=20", "training.sample_tokens=8", "training.histogram_interval=10"]  # fmt: skip


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("WANDB_SERVICE", None)  # an in-process W&B service of this pytest process is not the job's
    return env


def _train(*args: str, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "codex_ml.cli", "train-model", "--no-progress", *args]
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_at_random_point(tmp_path: Path, rng: random.Random) -> Path:
    run = tmp_path / "killed"
    job = _train("--config", TINY, "--output-root", str(tmp_path), "--run-name", "killed", "--enable-tensorboard",
                 "--mlflow-enable", "--enable-wandb", f"training.max_steps={MAX_STEPS}", *SETTINGS, cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "latest.pt").exists():  # resume needs one checkpoint
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"training ended or stalled before its first checkpoint:\n{job.communicate()[1][-3000:]}")
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.5))
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    return run


def _assert_readable(run: Path) -> None:
    """Our reader (a torn last line is allowed, nothing else), TensorBoard's and W&B's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for path in [*run.glob("*.ndjson"), *run.rglob("system_metrics*.jsonl")]:
        report = ReadReport(str(path))
        list(iter_records(path, report))
        assert report.bad_lines == [], (path, report.bad_lines)
    if (run / "tensorboard").exists():  # a kill before the sink started leaves no folder
        EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    for wandb_file in find_run_files(run):
        list(read_history(wandb_file))


def _trial(tmp_path: Path, seed: int) -> None:
    run = _kill_at_random_point(tmp_path, random.Random(seed))
    _assert_readable(run)
    err = ""
    # A kill that lands after close() wrote FINISHED leaves a complete run: nothing to resume
    # (--resume then refuses, naming training.max_steps; tested below).
    if json.loads((run / "run.json").read_text())["status"] != "FINISHED":
        resumed = _train("--resume", str(run), cwd=tmp_path)
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err[-3000:]
        _assert_readable(run)
    expected = Counter(range(1, MAX_STEPS + 1))
    found = steps_everywhere(run)
    assert found == {sink: expected for sink in found}, f"resume stderr:\n{err[-4000:]}"
    assert json.loads((run / "run.json").read_text())["status"] == "FINISHED"


@pytest.mark.parametrize("seed", range(3))
def test_sigkill_then_resume(tmp_path: Path, seed: int) -> None:
    _trial(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_sigkill_then_resume_many(tmp_path: Path, seed: int) -> None:
    _trial(tmp_path, seed)


def test_resume_of_a_run_killed_after_its_final_checkpoint_just_closes_it(tmp_path: Path) -> None:
    """Killed after the last checkpoint (e.g. while closing): --resume trains nothing, closes the
    run FINISHED and exits 0. A run that did finish still refuses, naming training.max_steps."""
    first = _train("--config", TINY, "--output-root", str(tmp_path), "--run-name", "done", "training.max_steps=10",
                   *SETTINGS, cwd=tmp_path)  # fmt: skip
    assert first.wait(timeout=300) == 0, first.communicate()[1][-3000:]
    run_file = tmp_path / "done" / "run.json"
    steps_before = [r["step"] for r in iter_records(tmp_path / "done" / "metrics.ndjson")]
    finished = _train("--resume", str(tmp_path / "done"), cwd=tmp_path)
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 2 and "training.max_steps" in err
    state = json.loads(run_file.read_text())
    run_file.write_text(json.dumps({**state, "status": "RUNNING"}))  # what a kill during close leaves
    closing = _train("--resume", str(tmp_path / "done"), cwd=tmp_path)
    _, err = closing.communicate(timeout=300)
    assert closing.returncode == 0, err[-3000:]
    assert json.loads(run_file.read_text())["status"] == "FINISHED"
    assert [r["step"] for r in iter_records(tmp_path / "done" / "metrics.ndjson")] == steps_before


def test_sigkill_before_the_first_checkpoint_then_resume_restarts_from_step_0(tmp_path: Path) -> None:
    """SIGKILL before any checkpoint (interval 1000): --resume restarts from step 0 in the same run,
    saying so in one line; the MLflow and W&B run ids stay, and every sink ends with each step once."""
    # Steps of 50 ms (the tiny model's take ~5): room for the sink processes to create the W&B and MLflow runs
    # before the run could end, as in any real training: the sink processes run only on CPU that training leaves idle.
    run, steps = tmp_path / "early", 3 * MAX_STEPS
    job = _train("--config", TINY, "--output-root", str(tmp_path), "--run-name", "early", "--enable-tensorboard",
                 "--mlflow-enable", "--enable-wandb", f"training.max_steps={steps}", *SETTINGS,
                 "training.checkpoint_interval=1000", "training.eval_interval=1000", "training.fault=slow@1:50ms",
                 cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120

    def started() -> bool:  # step 5 logged and the MLflow and W&B runs made (their ids are in run.json)
        if not (run / "metrics.ndjson").exists() or not (run / "run.json").exists():
            return False
        backends = json.loads((run / "run.json").read_text()).get("backends", {})
        steps = [r["step"] for r in iter_records(run / "metrics.ndjson", ReadReport("m"))]
        return {"mlflow", "wandb"} <= set(backends) and max(steps, default=0) >= 5

    while not started():
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"training ended or stalled before step 5:\n{job.communicate()[1][-3000:]}")
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    assert not list((run / "checkpoints").glob("*.pt"))
    backends = json.loads((run / "run.json").read_text())["backends"]
    resumed = _train("--resume", str(run), cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert len([line for line in err.splitlines() if "training restarts from step 0 in the same run" in line]) == 1
    _assert_readable(run)
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "FINISHED" and len(state["sessions"]) == 2
    for sink in ("mlflow", "wandb"):
        assert state["backends"][sink]["run_id"] == backends[sink]["run_id"], sink
    expected = Counter(range(1, steps + 1))
    found = steps_everywhere(run)
    assert found == {sink: expected for sink in found}, f"resume stderr:\n{err[-4000:]}"
