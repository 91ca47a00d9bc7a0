"""The MLflow sink's direct file-store writer (backends/mlflow_files.py) against MLflow's own log_batch."""

from __future__ import annotations

import json
import math
import resource
import signal
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from codex_ml.backends.mlflow_files import FileStoreMetrics, metric_line
from codex_ml.tracking import start_run

VALUES = [2.0, math.nan, math.inf, -math.inf, -0.0, 1e-300, 123456789.125, 1 / 3]
KEYS = ["loss", "train/loss", "deep/er/key"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def _metric_file(client: MlflowClient, run_id: str, key: str) -> bytes:
    info = client.get_run(run_id).info
    return (Path(info.artifact_uri.removeprefix("file://")).parent / "metrics" / key).read_bytes()


def test_same_bytes_and_history_as_log_batch(store: MlflowClient) -> None:
    experiment = store.create_experiment("e")
    by_mlflow = store.create_run(experiment).info.run_id
    by_us = store.create_run(experiment).info.run_id
    wall = 1_700_000_000.1234
    store.log_batch(by_mlflow, metrics=[Metric(k, float(v), int(wall * 1000), s) for s, v in enumerate(VALUES) for k in KEYS])
    writer = FileStoreMetrics.open(store, by_us)
    assert writer is not None
    writer.check_active()
    for key in KEYS:
        writer.append(key, [metric_line(wall, v, s) for s, v in enumerate(VALUES)])
    for key in KEYS:
        assert _metric_file(store, by_us, key) == _metric_file(store, by_mlflow, key)
        ours = [(m.step, m.value, m.timestamp) for m in store.get_metric_history(by_us, key)]
        theirs = [(m.step, m.value, m.timestamp) for m in store.get_metric_history(by_mlflow, key)]
        assert repr(ours) == repr(theirs)  # repr: nan == nan
    assert repr(store.get_run(by_us).data.metrics) == repr(store.get_run(by_mlflow).data.metrics)


def test_an_ended_run_is_refused_like_log_batch(store: MlflowClient) -> None:
    run_id = store.create_run(store.create_experiment("e")).info.run_id
    writer = FileStoreMetrics.open(store, run_id)
    store.delete_run(run_id)
    with pytest.raises(MlflowException):
        store.log_batch(run_id, metrics=[Metric("x", 1.0, 0, 0)])
    with pytest.raises(MlflowException):
        writer.check_active()


def test_a_failed_append_leaves_no_torn_line(store: MlflowClient) -> None:
    run_id = store.create_run(store.create_experiment("e")).info.run_id
    writer = FileStoreMetrics.open(store, run_id)
    writer.append("loss", [metric_line(1.0, 1.0, 0)])
    before = _metric_file(store, run_id, "loss")
    # A real short write: the file-size limit lets 10 more bytes in, then write() fails (EFBIG).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, hard))
    try:
        with pytest.raises(OSError):
            writer.append("loss", [metric_line(2.0, float(s), s) for s in range(1, 50)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert _metric_file(store, run_id, "loss") == before
    assert [m.step for m in store.get_metric_history(run_id, "loss")] == [0]


def test_other_stores_keep_log_batch(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    assert FileStoreMetrics.open(client, run_id) is None


def test_the_sink_writes_every_point_once_through_the_file_store(tmp_path: Path) -> None:
    keys = [f"train/k{i}" for i in range(10)]
    with start_run("burst", output_root=tmp_path, flush_interval=0.05, enable_mlflow=True) as run:
        for step in range(3_000):
            run.log_metrics({k: step + i / 10 for i, k in enumerate(keys)}, step=step)
    assert run.close_report.complete, run.close_report
    assert run.close_report.sinks["mlflow"]["delivered"] == 3_000
    saved = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    for i, key in enumerate(keys):
        history = sorted((m.step, m.value) for m in client.get_metric_history(saved["run_id"], key))
        assert history == [(step, step + i / 10) for step in range(3_000)]
    found = client.search_runs([saved["experiment_id"]], filter_string="metrics.`train/k0` = 2999")
    assert [r.info.run_id for r in found] == [saved["run_id"]]
    assert client.get_run(saved["run_id"]).info.status == "FINISHED"
