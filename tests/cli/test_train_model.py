"""`codex-ml train-model`: config file + overrides + every tracking flag, resume, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.cli.train_command import split_override_from_flag
from codex_ml.tracking.config import TrackingConfig

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "training" / "tiny.yaml")
FAST = ["training.eval_interval=3", "training.checkpoint_interval=3", "training.sample_tokens=8", "training.eval_batches=2"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "codex_ml.cli", "train-model", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_shows_config_resume_overrides_and_tracking_flags() -> None:
    """--help documents the command's own options and every shared tracking flag."""
    result = CliRunner().invoke(app, ["train-model", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--config", "--resume", "KEY=VALUE", "--enable-tensorboard", "--mlflow-enable", "--enable-wandb",
                 "--mlflow-tracking-uri", "--system-metrics", "--system-metrics-interval", "--prometheus-port"):
        assert flag in result.output, flag


def test_config_overrides_and_all_sinks_then_resume(tmp_path: Path) -> None:
    """A real process trains with TensorBoard, MLflow, W&B and AUTO system metrics, then --resume
    continues the same run (same MLflow and W&B run ids, every step once)."""
    first = _cli("--config", TINY, "--output-root", str(tmp_path), "--run-name", "cli", "--no-progress",
                 "--enable-tensorboard", "--mlflow-enable", "--enable-wandb", "--system-metrics-interval", "0.2",
                 "--system-metrics", "training.max_steps=6", "training.stop_after_steps=4", *FAST, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "cli"
    assert "stopped at step 4" in first.stderr and "TensorBoard:" in first.stdout and "MLflow:" in first.stdout
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) and (run / "mlruns").is_dir()
    assert list((run / "wandb").rglob("*.wandb"))
    samples = [json.loads(line) for line in (run / "checkpoints" / "system_metrics.jsonl").read_text().splitlines()]
    assert samples and "cpu" in samples[0]
    backends = json.loads((run / "run.json").read_text())["backends"]

    # A longer second session (max_steps raised) so its sampler surely takes a sample too.
    second = _cli("--resume", str(run), "--no-progress", "training.stop_after_steps=null", "training.max_steps=60",
                  cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    state = json.loads((run / "run.json").read_text())
    assert len(state["sessions"]) == 2 and state["status"] == "FINISHED"
    assert state["backends"]["mlflow"]["run_id"] == backends["mlflow"]["run_id"]
    assert state["backends"]["wandb"]["run_id"] == backends["wandb"]["run_id"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.ndjson").read_text().splitlines()
             if "train/loss" in json.loads(line)["metrics"]]
    assert steps == list(range(1, 61))
    more = [json.loads(line) for line in (run / "checkpoints" / "system_metrics.jsonl").read_text().splitlines()]
    assert len(more) > len(samples)  # the resumed session kept sampling into the same file


def test_unknown_key_is_one_error_listing_all(tmp_path: Path) -> None:
    """Typos and wrong types: exit 2, one message naming every key; no run directory is made."""
    result = CliRunner().invoke(app, ["train-model", "--config", TINY, "--output-root", str(tmp_path),
                                      "training.max_stepz=3", "model.n_layer=many"])
    assert result.exit_code == 2
    assert "training.max_stepz: unknown key" in result.output and "model.n_layer: expected int" in result.output
    assert "2 problem(s)" in result.output and not any(tmp_path.iterdir())


def test_resume_of_something_that_is_not_a_run(tmp_path: Path) -> None:
    """--resume on a plain folder, or together with --config, exits 2 with a message saying why."""
    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(app, ["train-model", "--resume", str(tmp_path / "folder")])
    assert result.exit_code == 2 and "not a run directory" in result.output
    both = CliRunner().invoke(app, ["train-model", "--resume", str(tmp_path / "folder"), "--config", TINY])
    assert both.exit_code == 2 and "either --config or --resume" in both.output
    assert list((tmp_path / "folder").iterdir()) == []


def test_bare_system_metrics_before_an_override() -> None:
    """`--system-metrics training.max_steps=5` is AUTO plus an override, not a file of that name."""
    tracking, overrides = split_override_from_flag(TrackingConfig(system_metrics="training.max_steps=5"), ["a.b=1"])
    assert tracking.system_metrics == "AUTO" and overrides == ["training.max_steps=5", "a.b=1"]
    kept, same = split_override_from_flag(TrackingConfig(system_metrics="logs/sys.jsonl"), [])
    assert kept.system_metrics == "logs/sys.jsonl" and same == []


def test_training_goes_on_when_psutil_cannot_be_imported(tmp_path: Path) -> None:
    """--system-metrics with psutil unimportable: one [monitoring-error] line, training finishes."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "psutil.py").write_text("raise ImportError('psutil blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "codex_ml.cli", "train-model", "--config", TINY, "--no-progress",
                           "--output-root", str(tmp_path / "runs"), "--run-name", "nops", "--system-metrics",
                           "training.max_steps=3", *FAST], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[monitoring-error]" in done.stderr and "psutil" in done.stderr
    summary = json.loads((tmp_path / "runs" / "nops" / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["last_step"] == 3
    assert not (tmp_path / "runs" / "nops" / "checkpoints" / "system_metrics.jsonl").exists()


# Long enough never to finish during the test, with no checkpoint, eval or sample before step 1000.
UNTIL_STOPPED = ["training.max_steps=5000", "training.checkpoint_interval=1000", "training.eval_interval=1000",
                 "training.histogram_interval=1000", "training.sample_interval=1000", "training.eval_batches=2",
                 "tracking.flush_interval=0.05"]


def _start_and_stop(tmp_path: Path, name: str, signum: int, *flags: str) -> tuple[int, str, int]:
    """Start train-model, send ``signum`` once a few steps are logged (before any checkpoint);
    return (exit status, stderr, the step it was at when signalled)."""
    import signal
    import time

    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)
    err = (tmp_path / f"{name}.err").open("w+")
    job = subprocess.Popen([sys.executable, "-m", "codex_ml.cli", "train-model", "--config", TINY, "--no-progress",
                            "--output-root", str(tmp_path), "--run-name", name, *flags, *UNTIL_STOPPED],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
                           # a test runner started in the background may ignore SIGINT; the job must not
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics, deadline, seen = tmp_path / name / "metrics.ndjson", time.monotonic() + 120, 0
    while seen < 3:
        assert job.poll() is None and time.monotonic() < deadline, err.seek(0) or err.read()[-3000:]
        time.sleep(0.05)
        seen = max([json.loads(line)["step"] for line in metrics.read_text().splitlines()] or [0]) \
            if metrics.exists() else 0
    assert not (tmp_path / name / "checkpoints" / "latest.pt").exists()
    job.send_signal(signum)
    status = job.wait(timeout=120)
    err.seek(0)
    return status, err.read(), seen


def test_ctrl_c_before_the_first_checkpoint_saves_one_and_resume_continues(tmp_path: Path) -> None:
    """SIGINT at step ~k (checkpoint interval 1000): the step is checkpointed, the run ends KILLED, exit
    130, no traceback; --resume continues from that step and every step is in metrics.ndjson once."""
    import signal

    status, err, seen = _start_and_stop(tmp_path, "int", signal.SIGINT)
    assert status == 130, err[-3000:]
    assert "Traceback" not in err and "Aborted" not in err
    stopped = [line for line in err.splitlines() if line.startswith("[train] SIGINT: stopped after step")]
    assert len(stopped) == 1 and f"--resume {tmp_path / 'int'}" in stopped[0], err[-3000:]
    step = int(stopped[0].split("after step ")[1].split()[0])
    assert step >= seen
    run = tmp_path / "int"
    assert json.loads((run / "run.json").read_text())["status"] == "KILLED"
    assert json.loads((run / "summary.json").read_text())["last_step"] == step
    assert (run / "checkpoints" / f"step-{step:08d}.pt").is_file()

    resumed = _cli("--resume", str(run), "--no-progress", "training.stop_after_steps=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"stopped at step {step + 3}" in resumed.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.ndjson").read_text().splitlines()
             if "train/loss" in json.loads(line)["metrics"]]
    assert steps == list(range(1, step + 4))


def test_sigterm_before_the_first_checkpoint_saves_one_and_dies_of_sigterm(tmp_path: Path) -> None:
    """SIGTERM: the step is checkpointed first, then the run is closed KILLED and the process dies of
    SIGTERM (exit status kept, as the tracking core promises); --resume finds that checkpoint."""
    import signal

    from codex_ml.training.components import find_resume_point

    status, err, seen = _start_and_stop(tmp_path, "term", signal.SIGTERM)
    assert status == -signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    run = tmp_path / "term"
    assert json.loads((run / "run.json").read_text())["status"] == "KILLED"
    point = find_resume_point(run)
    assert point.state["step"] >= seen and not point.restart
    assert f"[train] SIGTERM: stopped after step {point.state['step']} with a checkpoint" in err
