"""ui: a real TensorBoard and a real MLflow UI answer HTTP on 127.0.0.1, then stop."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from codex_ml.monitoring.runs import MonitoringInputError
from codex_ml.monitoring.ui import answers, pick_viewer, start_viewer
from codex_ml.tracking import start_run


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # prepare_environment sets MLFLOW_* with setdefault; monkeypatch restores them after.
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):  # fmt: skip
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read()


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_viewer_serves_the_run_and_stops(tmp_path: Path, kind: str) -> None:
    options = {"enable_tensorboard": True} if kind == "tensorboard" else {"enable_mlflow": True}
    with start_run("v", output_root=tmp_path, flush_interval=0.05, **options) as run:
        run.log_metrics({"train/loss": 1.5}, step=0)
    viewer = start_viewer(run.paths.root, kind)
    try:
        assert viewer.url.startswith("http://127.0.0.1:")
        assert _fetch(viewer.url)  # the page of that run
        if kind == "tensorboard":
            runs = _fetch(viewer.url.rstrip("/") + "/data/runs")
            assert b"[" in runs
        else:
            assert "/#/experiments/" in viewer.url
            assert _fetch(viewer.url.split("/#")[0] + "/health") == b"OK"
    finally:
        viewer.stop()
    assert viewer.process is not None and viewer.process.poll() is not None
    assert not answers(viewer.url.split("/#")[0] + "/")


def test_tensorboard_viewer_on_a_sweep_directory_shows_every_trial(tmp_path: Path) -> None:
    """A sweep directory has no tensorboard/ of its own: the viewer reads all its trials' event files."""
    sweep_dir = tmp_path / "sweeps" / "lr"
    for trial in ("trial-000", "trial-001"):
        with start_run(trial, output_root=sweep_dir, flush_interval=0.05, enable_tensorboard=True,
                       sweep="lr", trial=trial) as run:
            run.log_metrics({"train/loss": 1.5}, step=0)
    viewer = start_viewer(sweep_dir, "tensorboard")
    try:
        runs = json.loads(_fetch(viewer.url.rstrip("/") + "/data/runs"))
        assert sorted(runs) == ["trial-000/tensorboard", "trial-001/tensorboard"]
    finally:
        viewer.stop()


def test_optuna_viewer_serves_the_sweep_read_only_and_stops(tmp_path: Path) -> None:
    """optuna-dashboard on a sweep directory (an odd name: the storage URL must not need escaping)."""
    import optuna

    sweep_dir = tmp_path / "sweeps" / "lr sweep #1 100%"  # a sqlite URI of its absolute path needs escaping
    sweep_dir.mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="lr-sweep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    study.optimize(lambda trial: trial.suggest_float("training.lr", 1e-4, 1e-2), n_trials=2)
    viewer = start_viewer(sweep_dir, "optuna")
    try:
        assert viewer.url.startswith("http://127.0.0.1:") and viewer.url.endswith("/dashboard")
        assert _fetch(viewer.url)
        base = viewer.url.removesuffix("/dashboard")
        (summary,) = json.loads(_fetch(f"{base}/api/studies"))["study_summaries"]
        assert summary["study_name"] == "lr-sweep"
        trials = json.loads(_fetch(f"{base}/api/studies/{summary['study_id']}"))["trials"]
        assert [t["state"] for t in trials] == ["Complete", "Complete"]
        delete = urllib.request.Request(f"{base}/api/studies/{summary['study_id']}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError, match="500"):  # read-only storage: the UI cannot delete
            urllib.request.urlopen(delete, timeout=10)
    finally:
        viewer.stop()
    assert viewer.process is not None and viewer.process.poll() is not None
    assert not answers(viewer.url)
    assert len(optuna.load_study(study_name="lr-sweep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials) == 2


def test_viewer_choice_and_missing_store_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(MonitoringInputError, match="exactly one viewer"):
        pick_viewer(True, True)
    with pytest.raises(MonitoringInputError, match="--optuna"):
        pick_viewer(False, False, False)
    assert pick_viewer(False, False, True) == "optuna"
    with pytest.raises(MonitoringInputError, match="has no optuna.db"):
        start_viewer(tmp_path, "optuna")
    with start_run("bare", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"x": 1}, step=0)
    with pytest.raises(MonitoringInputError, match="--enable-tensorboard"):
        start_viewer(run.paths.root, "tensorboard")
    with pytest.raises(MonitoringInputError, match="--mlflow-enable"):
        start_viewer(run.paths.root, "mlflow")


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM"])
def test_console_script_prints_the_url_and_stops_its_viewer(tmp_path: Path, stop_signal: str) -> None:
    """`codex-ml monitoring ui --tensorboard` in a real process: URL answers; Ctrl-C/SIGTERM stops both."""
    import os
    import signal
    import subprocess
    import sys

    with start_run("cli", output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True) as run:
        run.log_metrics({"x": 1.0}, step=0)
    command = [sys.executable, "-m", "codex_ml.monitoring.cli", "ui", str(run.paths.root), "--tensorboard"]
    # A shell without job control starts background jobs (`.ci/run &`) with SIGINT ignored, and
    # Python keeps an inherited SIG_IGN: give the child the default so Ctrl-C is what is tested.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()  # blocks until the viewer answers
        assert "http://127.0.0.1:" in line, process.stderr.read() if process.poll() is not None else line
        url = line.split()[-4]
        assert _fetch(url)
        process.send_signal(getattr(signal, stop_signal))
        assert process.wait(timeout=30) == 0
        assert not answers(url)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def test_wait_until_answers_reports_an_exit_or_a_timeout_with_the_log(tmp_path: Path) -> None:
    """The shared start-up wait says which way a server failed and shows the end of its log."""
    import subprocess
    import sys

    from codex_ml.monitoring.ui import ViewerError, free_port, wait_until_answers

    log = tmp_path / "server.log"
    log.write_text("bind failed: address in use\n")
    url = f"http://127.0.0.1:{free_port()}/"
    exits = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ViewerError, match=r"(?s)demo exited with status 3:.*bind failed"):
        wait_until_answers(url, exits, 30, log, "demo")
    sleeps = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(ViewerError, match="demo did not answer at .* within 1 s"):
            wait_until_answers(url, sleeps, 0.6, log, "demo")
    finally:
        sleeps.kill()
        sleeps.wait()
