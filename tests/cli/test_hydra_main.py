"""`python -m codex_ml.cli.main`: Hydra overrides beside the old-style tracking flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codex_ml.cli.main import split_tracking_flags

FAST = ["training=tiny", "training.max_steps=40", "training.eval_interval=10", "training.progress=false"]


def _hydra(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR")}
    return subprocess.run([sys.executable, "-m", "codex_ml.cli.main", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_flags_are_taken_out_and_overrides_adapted() -> None:
    """Tracking flags leave argv; group choices and keys are rewritten for our tree; Hydra's own flags stay."""
    flags, rest = split_tracking_flags([
        "training=tiny", "--enable-wandb", "training.max_steps=5", "--mlflow-enable", "--mlflow-tracking-uri",
        "sqlite:///x.db", "--mlflow-experiment", "exp", "--enable-tensorboard", "--system-metrics",
        "model.n_layer=2", "--system-metrics-interval", "2.5", "--prometheus-port", "9109", "--cfg", "job",
        "+tracking.fsync=true",
    ])
    assert flags.enable_wandb and flags.enable_mlflow and flags.enable_tensorboard
    assert (flags.mlflow_tracking_uri, flags.mlflow_experiment) == ("sqlite:///x.db", "exp")
    assert (flags.system_metrics, flags.system_metrics_interval, flags.prometheus_port) == ("AUTO", 2.5, 9109)
    assert rest == ["training@_global_=tiny", "++training.max_steps=5", "++model.n_layer=2", "--cfg", "job",
                    "+tracking.fsync=true"]
    assert split_tracking_flags(["--enable-mlflow"])[0].enable_mlflow


def test_hydra_cli_trains_with_old_style_flags(tmp_path: Path) -> None:
    """A real process: Hydra composes configs/, flags open TensorBoard/MLflow and the sampler."""
    done = _hydra(tmp_path, *FAST, f"tracking.output_root={tmp_path / 'runs'}", "tracking.run_name=h",
                  "--enable-tensorboard", "--mlflow-enable", "--mlflow-experiment", "hydra-exp",
                  "--system-metrics", "--system-metrics-interval", "0.1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "h"
    steps = [json.loads(line)["step"] for line in (run / "metrics.ndjson").read_text().splitlines()
             if "train/loss" in line]
    assert steps == list(range(1, 41))
    state = json.loads((run / "run.json").read_text())
    assert state["sinks"] == ["tensorboard", "mlflow"] and state["backends"]["mlflow"]["experiment"] == "hydra-exp"
    assert (run / "checkpoints" / "system_metrics.jsonl").stat().st_size > 0
    params = json.loads((run / "params.json").read_text())
    assert params["model.n_layer"] == 1 and params["training.max_steps"] == 40  # tiny.yaml + override
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # Hydra wrote no outputs/ of its own


def test_hydra_cli_reports_every_bad_key_at_once(tmp_path: Path) -> None:
    """Unknown keys and wrong types through Hydra: exit 2, one message listing each."""
    done = _hydra(tmp_path, "training.max_stepz=3", "model.n_layer=x", "colour.hue=1")
    assert done.returncode == 2, done.stderr[-2000:]
    for needle in ("3 problem(s)", "training.max_stepz: unknown key", "model.n_layer: expected int",
                   "colour: unknown section"):
        assert needle in done.stderr, needle
    assert list(tmp_path.iterdir()) == []


def test_help_lists_tracking_flags_and_hydra_help(tmp_path: Path) -> None:
    """--help shows our tracking flags, then Hydra's own help; nothing is trained."""
    done = _hydra(tmp_path, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    for needle in ("--enable-wandb", "--mlflow-enable", "--system-metrics", "--prometheus-port", "Powered by Hydra"):
        assert needle in done.stdout, needle
    assert list(tmp_path.iterdir()) == []


def test_pipeline_choice_runs_the_pipeline_runner(tmp_path: Path) -> None:
    """`pipeline=<name>` hands the composed config to the pipeline runner instead of the trainer."""
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR")}
    done = subprocess.run([sys.executable, "-m", "codex_ml.cli.main", "pipeline=tiny",
                           f"pipeline.output_dir={tmp_path / 'out'}"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "summary.json").is_file()
    assert not (tmp_path / "out" / "checkpoints" / "latest.pt").exists()  # not a train-model run


def test_ctrl_c_during_training_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C: the trainer checkpoints the step and closes the run KILLED; the Hydra CLI exits 130 like
    train-model, with no KeyboardInterrupt traceback."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR")}
    run = tmp_path / "runs" / "int"
    err = (tmp_path / "err.txt").open("w+")
    job = subprocess.Popen([sys.executable, "-m", "codex_ml.cli.main", "training=tiny", "training.max_steps=5000",
                            "training.checkpoint_interval=1000", "training.eval_interval=1000",
                            "training.progress=false", "tracking.flush_interval=0.05",
                            f"tracking.output_root={tmp_path / 'runs'}", "tracking.run_name=int"],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ((run / "metrics.ndjson").exists() and (run / "metrics.ndjson").read_text().count("\n") >= 3):
        assert job.poll() is None and time.monotonic() < deadline, err.seek(0) or err.read()[-3000:]
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    status = job.wait(timeout=120)
    err.seek(0)
    text = err.read()
    assert status == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "KILLED"
    assert list((run / "checkpoints").glob("step-*.pt"))
