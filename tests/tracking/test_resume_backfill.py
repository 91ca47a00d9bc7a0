"""Resume back-fills every sink from the NDJSON: after a crash or a session without a sink,
each backend ends with every step exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from codex_ml.tracking import start_run
from codex_ml.rundir.reader import metric_series
from codex_ml.backends.wandb import find_run_files, read_history

ROOT = Path(__file__).resolve().parents[2]
SINKS = {"enable_tensorboard": True, "enable_mlflow": True, "enable_wandb": True}


def _tensorboard_steps(run_dir: Path, key: str) -> Counter:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    counts: Counter = Counter()
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        counts.update(e.step for e in acc.Scalars(key)) if key in acc.Tags()["scalars"] else None
    return counts


def _mlflow_steps(run_dir: Path, key: str) -> Counter:
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    state = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    prepare_environment(state["tracking_uri"])
    return Counter(m.step for m in MlflowClient(state["tracking_uri"]).get_metric_history(state["run_id"], key))


def _wandb_steps(run_dir: Path, key: str) -> Counter:
    return Counter(row["step"] for f in find_run_files(run_dir) for row in read_history(f) if key in row)


def _assert_every_sink_has(run_dir: Path, steps: range) -> None:
    expected = Counter(steps)
    assert Counter(s for s, _ in metric_series(run_dir / "metrics.ndjson")["loss"]) == expected
    assert _tensorboard_steps(run_dir, "loss") == expected
    assert _mlflow_steps(run_dir, "loss") == expected
    assert _wandb_steps(run_dir, "loss") == expected


def test_a_session_without_sinks_is_back_filled_on_the_next_resume(tmp_path: Path, capfd) -> None:
    with start_run("gap", output_root=tmp_path, flush_interval=0.05, **SINKS) as run:
        for step in range(20):
            run.log_metrics({"loss": float(step)}, step=step)
    with start_run("gap", output_root=tmp_path, resume=True, flush_interval=0.05) as run:  # sinks off this time
        for step in range(20, 30):
            run.log_metrics({"loss": float(step)}, step=step)
    with start_run("gap", output_root=tmp_path, resume=True, flush_interval=0.05, **SINKS) as run:
        for step in range(30, 40):
            run.log_metrics({"loss": float(step)}, step=step)
    _assert_every_sink_has(run.paths.root, range(40))
    assert "back-filled 10 points" in capfd.readouterr().err


KILLED = textwrap.dedent(
    """
    import os, signal, sys, time
    from codex_ml.tracking import start_run
    run = start_run("killed", output_root=sys.argv[1], flush_interval=0.02, enable_tensorboard=True,
                    enable_mlflow=True, enable_wandb=True)
    for step in range(300):
        run.log_metrics({"loss": float(step)}, step=step)
    run.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # sinks are still catching up
    """
)


def test_resume_after_sigkill_leaves_every_sink_complete(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True,
                          timeout=180, env=env)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    with start_run("killed", output_root=tmp_path, resume=True, flush_interval=0.05, **SINKS) as run:
        for step in range(300, 320):
            run.log_metrics({"loss": float(step)}, step=step)
    _assert_every_sink_has(run.paths.root, range(320))


def test_a_torn_mlflow_file_store_metric_is_repaired_on_resume(tmp_path: Path, capfd) -> None:
    """SIGKILL while MLflow's file store appends a metric leaves the file empty or ending mid-line;
    MLflow then refuses the whole metric ("malformed"). Resume repairs the file and back-fills it."""
    with start_run("torn", output_root=tmp_path, flush_interval=0.05, enable_mlflow=True) as run:
        for step in range(10):
            run.log_metrics({"loss": float(step), "lr": 0.1}, step=step)
    metric_files = {p.name: p for p in (tmp_path / "torn" / "mlruns").glob("*/*/metrics/*")}
    metric_files["loss"].write_bytes(b"")  # created, never written
    lr = metric_files["lr"].read_bytes()
    metric_files["lr"].write_bytes(lr[: lr.rindex(b"\n", 0, len(lr) - 1) + 5])  # a torn last line
    capfd.readouterr()
    with start_run("torn", output_root=tmp_path, resume=True, flush_interval=0.05, enable_mlflow=True) as run:
        run.log_metrics({"loss": 10.0, "lr": 0.1}, step=10)
    assert "[monitoring-error]" not in capfd.readouterr().err
    assert _mlflow_steps(tmp_path / "torn", "loss") == Counter(range(11))
    assert _mlflow_steps(tmp_path / "torn", "lr") == Counter(range(11))
