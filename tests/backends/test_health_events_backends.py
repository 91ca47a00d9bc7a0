"""Health events in MLflow and W&B, read back from the real stores.

MLflow (a real file store): the run tag ``codex.health.last`` holds the latest event's message,
cut to MLflow's tag limit, and every event is a text artifact ``text/health/<rule>/...``.
W&B (offline, W&B's own run file read with its Record protobufs): every event is a
``health/<rule>`` table row in the history, which ``wandb sync`` uploads later; an offline run
raises no ``run.alert`` (that would reach W&B only at the sync). The alert an online run raises
is checked on an offline run too: there is no W&B server here, and W&B stores the alert record it
would send.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from wandb.proto import wandb_internal_pb2

from codex_ml.backends import mlflow_utils
from codex_ml.backends.mlflow import HEALTH_TAG
from codex_ml.backends.wandb import WandbSink, find_run_files, iter_payloads, read_history, records_of
from codex_ml.health import HealthEvent
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.sink import RunInfo
from codex_ml.tracking import start_run

NAN_STEP = 3


@pytest.fixture(autouse=True)
def _backend_env(clean_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's clean backend environment; MlflowClient reads the run's file store back here too."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _train(run: Any, extra: HealthEvent | None = None) -> None:
    """Ten steps with a NaN loss at NAN_STEP (the nonfinite rule fires), then ``extra``."""
    for step in range(10):
        run.log_metrics({"train/loss": math.nan if step == NAN_STEP else 1.0 / (step + 1)}, step=step)
    if extra is not None:
        run.log_event(extra)


def test_mlflow_tag_and_text_read_back(tmp_path: Path) -> None:
    long = HealthEvent(time.time(), 9, "stall", "warning", None, 30.0, 10.0, "no step for 30 s; " + "x" * 9000, "log")
    with start_run("ml", output_root=tmp_path, flush_interval=0.05, enable_mlflow=True) as run:
        _train(run)
        _wait_for(lambda: "mlflow" in json.loads(run.paths.run_file.read_text()).get("backends", {}))
        state = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
        client = MlflowClient(tracking_uri=state["tracking_uri"])
        _wait_for(lambda: client.get_run(state["run_id"]).data.tags.get(HEALTH_TAG))
        assert client.get_run(state["run_id"]).data.tags[HEALTH_TAG] == f"train/loss is nan at step {NAN_STEP}"
        run.log_event(long)
    assert run.close_report.complete, run.close_report

    tags = client.get_run(state["run_id"]).data.tags
    assert tags[HEALTH_TAG] == long.message[: mlflow_utils.MAX_TAG_VALUE]  # the latest event, cut to the limit
    texts = {a.path for folder in ("text/health/nonfinite", "text/health/stall")
             for a in client.list_artifacts(state["run_id"], folder)}  # fmt: skip
    assert texts == {f"text/health/nonfinite/step_{NAN_STEP:08d}.txt", "text/health/stall/step_00000009.txt"}
    # The dispatcher's running count reaches MLflow as a metric at each event's step.
    counts = sorted((m.step, m.value) for m in client.get_metric_history(state["run_id"], "health/events"))
    assert counts == [(NAN_STEP, 1.0), (9, 2.0)]


def _wait_for(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the sink did not write the event in time"
        time.sleep(0.05)


def test_wandb_offline_event_rows_read_back(tmp_path: Path) -> None:
    stop = HealthEvent(time.time(), 8, "spike", "warning", "train/loss", 9.0, 6.0, "train/loss = 9 at step 8", "stop")
    with start_run("wb", output_root=tmp_path, flush_interval=0.05, enable_wandb=True) as run:
        _train(run, stop)
    assert run.close_report.complete, run.close_report

    [path] = find_run_files(run.paths.root)
    _wait_for(lambda: "exit" in {_kind(payload) for payload in iter_payloads(path)})  # see the alert test
    rows = read_history(path)
    # W&B flattens a logged table into "<key>/_type", "<key>/path", ...: one row per event.
    tables = {key[: -len("/_type")]: (row["step"], row[key[: -len("_type")] + "path"]) for row in rows for key in row
              if key.startswith("health/") and key.endswith("/_type") and row[key] == "table-file"}  # fmt: skip
    assert set(tables) == {"health/nonfinite", "health/spike"}
    assert tables["health/nonfinite"][0] == NAN_STEP and tables["health/spike"][0] == 8
    files = path.parent / "files"
    for key, message in (("health/nonfinite", f"train/loss is nan at step {NAN_STEP}"), ("health/spike", stop.message)):
        step, table_path = tables[key]
        table = json.loads((files / table_path).read_text())
        assert table["columns"] == ["step", "text"] and table["data"] == [[step, message]]
    assert sorted(row["health/events"] for row in rows if "health/events" in row) == [1, 2]
    assert _alerts(path) == []  # offline: no alert record that a sync would deliver late


def test_wandb_alert_call_is_accepted_by_wandb(tmp_path: Path) -> None:
    """The alert an online run raises, made on a real offline run (no W&B server here): W&B accepts
    the title and level and stores the alert record that it would send."""
    sink = WandbSink("codex-test")
    sink.start(RunInfo(name="al", run_id="0123456789abcdef0123", paths=RunPaths(tmp_path)))
    try:
        sink.alert({"rule": "grad_explosion" * 6, "severity": "critical", "message": "grad norm 1e9 at step 7"})
        sink.alert({"rule": "stall", "severity": "warning", "message": "no step for 30 s"})
    finally:
        sink.close("FINISHED")
    [path] = find_run_files(tmp_path)
    # finish() can return before W&B's service has written the file (seen on the second run of a
    # process): wait for the run's exit record.
    _wait_for(lambda: "exit" in {_kind(payload) for payload in iter_payloads(path)})
    alerts = [(a.title, a.text, a.level) for a in _alerts(path)]
    assert alerts == [(("grad_explosion" * 6)[:63], "grad norm 1e9 at step 7", "ERROR"),
                      ("stall (warning)", "no step for 30 s", "WARN")]  # fmt: skip


def _kind(payload: bytes) -> str:
    return wandb_internal_pb2.Record.FromString(payload).WhichOneof("record_type")


def _alerts(path: Path) -> list[Any]:
    return records_of(path, "alert")
