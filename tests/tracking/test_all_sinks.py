"""All sinks at once: every backend gets every step, and one broken sink stops nobody else."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing import event_accumulator as ea

from codex_ml.tracking import start_run
from codex_ml.rundir.reader import metric_series
from codex_ml.backends.wandb import find_run_files, read_history

STEPS = 200
KEYS = ["train/loss", "train/lr", "train/grad_norm", "eval/loss", "throughput"]


def _value(key_index: int, step: int) -> float:
    return round(math.sin(step / 7 + key_index) * 10 + key_index, 3)


def _log_everything(run) -> None:
    for step in range(STEPS):
        run.log_metrics({key: _value(i, step) for i, key in enumerate(KEYS)}, step=step)


def _tensorboard_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = ea.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return {key: [(e.step, e.value) for e in acc.Scalars(key)] for key in acc.Tags()["scalars"]}


def _wandb_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    (path,) = find_run_files(run_dir)
    series: dict[str, list[tuple[int, float]]] = {}
    for row in read_history(path):
        for key in KEYS:
            if key in row:
                series.setdefault(key, []).append((row["step"], row[key]))
    return series


def _assert_complete(series: dict[str, list[tuple[int, float]]], rel: float) -> None:
    assert set(KEYS) <= set(series)
    for i, key in enumerate(KEYS):
        points = sorted(series[key])
        assert [s for s, _ in points] == list(range(STEPS)), key
        assert [v for _, v in points] == pytest.approx([_value(i, s) for s in range(STEPS)], rel=rel)


def test_every_backend_has_every_step(tmp_path: Path, mlflow_server: str) -> None:
    with start_run(
        "all", output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True, enable_mlflow=True,
        enable_wandb=True, mlflow_tracking_uri=mlflow_server, mlflow_experiment="codex-all-sinks",
    ) as run:
        _log_everything(run)
    report = run.close_report
    assert report.complete, report
    assert set(report.sinks) == {"tensorboard", "mlflow", "wandb"}
    assert all(s["undelivered"] == 0 and s["dropped"] == 0 for s in report.sinks.values())

    ndjson = metric_series(run.paths.metrics)
    assert {k: ndjson[k] for k in KEYS} == {k: [(s, _value(i, s)) for s in range(STEPS)] for i, k in enumerate(KEYS)}
    _assert_complete(_tensorboard_series(run.paths.root), rel=1e-6)  # float32
    _assert_complete(_wandb_series(run.paths.root), rel=0)

    state = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    client = MlflowClient(tracking_uri=mlflow_server)
    mlflow_series = {
        key: [(m.step, m.value) for m in client.get_metric_history(state["run_id"], key)] for key in KEYS
    }
    _assert_complete(mlflow_series, rel=0)
    assert client.get_run(state["run_id"]).info.status == "FINISHED"


def test_a_dead_mlflow_server_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = start_run(
        "dead-mlflow", output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True, enable_mlflow=True,
        enable_wandb=True, mlflow_tracking_uri="http://127.0.0.1:9", close_timeout=15,
    )
    _log_everything(run)
    began = time.monotonic()
    report = run.close()
    # A bound on correctness, not speed: close() must give up at its timeout instead of hanging.
    assert time.monotonic() - began < 15 + 5

    assert report.status == "FINISHED"
    assert not report.complete
    assert report.sinks["mlflow"]["delivered"] == 0
    assert report.sinks["mlflow"]["undelivered"] + report.sinks["mlflow"]["dropped"] > 0
    for name in ("tensorboard", "wandb"):
        assert report.sinks[name]["undelivered"] == 0 and report.sinks[name]["failures"] == 0, name

    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1, err
    assert errors[0].startswith("[monitoring-error] mlflow:")

    ndjson = metric_series(run.paths.metrics)
    assert all([s for s, _ in ndjson[key]] == list(range(STEPS)) for key in KEYS)
    _assert_complete(_tensorboard_series(run.paths.root), rel=1e-6)
    _assert_complete(_wandb_series(run.paths.root), rel=0)
    summary = json.loads(run.paths.summary.read_text())
    assert summary["status"] == "FINISHED"
    assert [e["sink"] for e in summary["errors"]] == ["mlflow"]
