"""A real MLflow server that dies or freezes mid-run: training goes on, close() returns within
its timeout, the NDJSON has every point, and `codex-ml monitoring export --to mlflow`
back-fills exactly the missing points once the server is back."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from codex_ml.monitoring.cli import app as monitoring_app
from codex_ml.tracking import start_run
from codex_ml.rundir.reader import metric_series

KEYS = [f"train/k{i}" for i in range(10)]
STEPS = 200
OUTAGE_AT = 60
CLOSE_TIMEOUT = 8.0


def _train_through_outage(tmp_path, server, outage) -> tuple:
    run = start_run("outage", output_root=tmp_path / "runs", enable_mlflow=True, mlflow_tracking_uri=server.uri,
                    flush_interval=0.05, close_timeout=CLOSE_TIMEOUT)  # fmt: skip
    _wait_for_mlflow_run(run)  # the outage is mid-run: after the MLflow run exists
    for step in range(STEPS):
        if step == OUTAGE_AT:
            outage()
        run.log_metrics({key: step + i / 10 for i, key in enumerate(KEYS)}, step=step)
        time.sleep(0.002)
    began = time.monotonic()
    report = run.close()
    return run, report, time.monotonic() - began


def _wait_for_mlflow_run(run, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "mlflow" not in json.loads(run.paths.run_file.read_text()).get("backends", {}):
        assert time.monotonic() < deadline, "the MLflow sink never started"
        time.sleep(0.05)


def _history(uri: str, run_id: str) -> dict[str, Counter]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {key: Counter(m.step for m in client.get_metric_history(run_id, key)) for key in KEYS}


def _check_backfill(run, server) -> None:
    state = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    before = _history(server.uri, state["run_id"])
    assert sum(sum(c.values()) for c in before.values()) < len(KEYS) * STEPS  # the outage cost points
    result = CliRunner().invoke(monitoring_app, ["export", str(run.paths.root), "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    after = _history(server.uri, state["run_id"])
    assert after == {key: Counter(range(STEPS)) for key in KEYS}  # every step exactly once
    again = CliRunner().invoke(monitoring_app, ["export", str(run.paths.root), "--to", "mlflow"])
    assert again.exit_code == 0, again.output
    assert _history(server.uri, state["run_id"]) == after  # idempotent


@pytest.fixture
def fast_failing_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short MLflow HTTP timeouts so a dead server is noticed in seconds."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


def test_killed_server_then_backfill(tmp_path, mlflow_server_factory, fast_failing_http, capfd) -> None:
    server = mlflow_server_factory().start()
    run, report, closing = _train_through_outage(tmp_path, server, server.kill)
    assert closing < CLOSE_TIMEOUT + 5  # a bound on hanging, not a speed target
    assert not report.complete and report.sinks["mlflow"]["delivered"] < STEPS
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1 and errors[0].startswith("[monitoring-error] mlflow:")
    assert all([s for s, _ in series] == list(range(STEPS)) for series in metric_series(run.paths.metrics).values())
    server.start()  # back, same port and store
    _check_backfill(run, server)


def test_frozen_server_then_backfill(tmp_path, mlflow_server_factory, fast_failing_http) -> None:
    server = mlflow_server_factory().start()
    run, report, closing = _train_through_outage(tmp_path, server, lambda: server.freeze(True))
    assert closing < CLOSE_TIMEOUT + 5
    assert not report.complete
    assert all([s for s, _ in series] == list(range(STEPS)) for series in metric_series(run.paths.metrics).values())
    server.freeze(False)
    time.sleep(3)  # requests the frozen server had already received finish now; then count
    _check_backfill(run, server)
