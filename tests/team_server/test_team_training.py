"""A real tiny ``codex-ml train-model`` (new process) with every sink on, MLflow on the team server:
every step of every metric lands in the server once, and the run's config, final summary and
curves are uploaded through the server's artifact proxy and can be downloaded back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from team_helpers import mlflow_state
from train_helpers import train_tiny

from codex_ml.backends.names import mlflow_name
from codex_ml.monitoring.ui import free_port
from codex_ml.rundir.reader import metric_series

SINKS = ("tensorboard", "mlflow", "wandb", "prometheus")


def test_training_run_with_every_sink_logs_into_the_team_server(tmp_path: Path, team_server) -> None:
    from mlflow.tracking import MlflowClient

    train_tiny(tmp_path, "--run-name", "team", "--output-root", str(tmp_path / "runs"), "--enable-tensorboard",
               "--mlflow-enable", "--mlflow-tracking-uri", team_server.uri, "--enable-wandb",
               "--prometheus-port", str(free_port()), "--system-metrics", "--system-metrics-interval", "0.5")  # fmt: skip
    run_dir = tmp_path / "runs" / "team"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(SINKS) <= set(summary["sinks"]), summary["sinks"]
    for name in SINKS:  # every sink got everything: nothing undelivered, dropped or disabled
        stats = summary["sinks"][name]
        assert (stats["undelivered"], stats["dropped"], stats["disabled"]) == (0, 0, False), (name, stats)

    state = mlflow_state(run_dir)
    assert state["tracking_uri"] == team_server.uri
    client = MlflowClient(team_server.uri)
    expected = {key: Counter(step for step, _ in points) for key, points in metric_series(run_dir / "metrics.ndjson").items()}
    assert {"train/loss", "val/loss", "train/lr"} <= set(expected)
    for key, steps in expected.items():
        assert Counter(m.step for m in client.get_metric_history(state["run_id"], mlflow_name(key))) == steps, key

    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server's proxy, not a local path
    assert {f.path for f in client.list_artifacts(state["run_id"], "codex_ml")} == {
        "codex_ml/params.json", "codex_ml/summary.json", "codex_ml/curves.png"}  # fmt: skip
    fetched = Path(client.download_artifacts(state["run_id"], "codex_ml", str(tmp_path / "fetched")))
    assert (fetched / "params.json").read_bytes() == (run_dir / "params.json").read_bytes()
    assert (fetched / "summary.json").read_bytes() == (run_dir / "summary.json").read_bytes()
    assert (fetched / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Stored where the server keeps artifacts (--artifacts-destination), not in the trainer's run directory.
    stored = list((team_server.data_dir / "artifacts").glob(f"*/{state['run_id']}/artifacts/codex_ml/summary.json"))
    assert len(stored) == 1 and stored[0].read_bytes() == (run_dir / "summary.json").read_bytes()
