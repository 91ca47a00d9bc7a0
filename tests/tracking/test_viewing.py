"""The "how to view" lines name only what exists: no `wandb sync` of a missing folder, no
`mlflow ui` on a store that was never written, a server's URL without its credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.tracking import start_run
from codex_ml.rundir.paths import RunPaths
from codex_ml.tracking.viewing import describe_outputs


def _lines(run) -> str:
    return "\n".join(describe_outputs(RunPaths(run.paths.root), run.sink_names))


def _wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str):
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with start_run("w", output_root=tmp_path, enable_wandb=True, close_timeout=20.0, sink_max_failures=1) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    return run


def test_wandb_offline_names_the_folder_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _lines(_wandb_run(tmp_path, monkeypatch, "offline"))
    folder = text.split("W&B (offline): ")[1].split()[0]
    assert Path(folder).is_dir() and Path(folder).name.startswith("offline-run-")
    assert f"wandb sync {folder}" in text


@pytest.mark.parametrize("mode", ["disabled", "offlin"])
def test_wandb_that_wrote_nothing_offers_no_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    run = _wandb_run(tmp_path, monkeypatch, mode)
    text = _lines(run)
    assert "wandb sync" not in text and "offline-run" not in text
    assert not (run.paths.root / "wandb").exists() or not any((run.paths.root / "wandb").glob("*/offline-run-*"))
    expected = "off (WANDB_MODE=disabled)" if mode == "disabled" else "nothing was written (the sink did not start"
    assert expected in text


def test_mlflow_server_is_shown_by_its_run_page(tmp_path: Path, mlflow_server: str) -> None:
    with start_run("m", output_root=tmp_path, enable_mlflow=True, mlflow_tracking_uri=mlflow_server) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    text = _lines(run)
    saved = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    assert f"open {mlflow_server}/#/experiments/{saved['experiment_id']}/runs/{saved['run_id']} in a browser" in text
    assert "mlflow ui" not in text and "mlruns" not in text
    assert not run.paths.mlruns.exists()


def test_local_mlflow_store_is_offered_when_it_exists(tmp_path: Path) -> None:
    with start_run("f", output_root=tmp_path, enable_mlflow=True, enable_tensorboard=True) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    text = _lines(run)
    assert "mlflow ui --backend-store-uri" in text and str(run.paths.mlruns.resolve()) in text
    assert run.paths.mlruns.is_dir()
    assert f"tensorboard --logdir {run.paths.tensorboard}" in text


def _crafted_run(tmp_path: Path, backends: dict, sinks: list[str]) -> RunPaths:
    paths = RunPaths(tmp_path / "runs" / "x")
    paths.root.mkdir(parents=True)
    paths.run_file.write_text(json.dumps({"run_name": "x", "sinks": sinks, "backends": backends}))
    return paths


def test_sinks_that_never_started_get_no_command(tmp_path: Path) -> None:
    # An http:// MLflow URI whose server refused the run, TensorBoard that wrote no event file.
    paths = _crafted_run(tmp_path, {}, ["mlflow", "tensorboard", "wandb"])
    text = "\n".join(describe_outputs(paths, ["tensorboard", "mlflow", "wandb"]))
    assert "mlflow ui" not in text and "mlruns" not in text and "tensorboard --logdir" not in text
    assert "wandb sync" not in text
    assert text.count("nothing was written (the sink did not start") == 3


def test_a_saved_uri_with_credentials_is_shown_without_them(tmp_path: Path) -> None:
    saved = {"mlflow": {"tracking_uri": "https://alice:hunter22@mlflow.example.com:5000", "experiment_id": "3",
                        "run_id": "abc"}}  # fmt: skip
    text = "\n".join(describe_outputs(_crafted_run(tmp_path, saved, ["mlflow"]), ["mlflow"]))
    assert "open https://mlflow.example.com:5000/#/experiments/3/runs/abc in a browser" in text
    assert "hunter22" not in text and "alice" not in text


def test_wandb_online_points_at_its_local_copy_not_an_offline_sync(tmp_path: Path) -> None:
    # WANDB_MODE=online writes wandb/run-<time>-<id>/, never an offline-run-* folder.
    paths = _crafted_run(tmp_path, {"wandb": {"run_id": "abc", "dir": ""}}, ["wandb"])
    online = paths.root / "wandb" / "run-20260101_000000-abc"
    (online / "files").mkdir(parents=True)
    text = "\n".join(describe_outputs(paths, ["wandb"]))
    assert f"W&B (online): synced as it ran; local copy {online}" in text
    assert "offline" not in text


def test_wandb_online_that_did_not_deliver_says_so_and_how_to_upload(tmp_path: Path) -> None:
    # W&B online with no network: a local run-* folder exists, but summary.json counts what never reached W&B.
    paths = _crafted_run(tmp_path, {"wandb": {"run_id": "abc", "dir": ""}}, ["wandb"])
    online = paths.root / "wandb" / "run-20260101_000000-abc"
    (online / "files").mkdir(parents=True)
    stats = {"delivered": 0, "dropped": 0, "undelivered": 120, "failures": 1, "disabled": True}
    paths.summary.write_text(json.dumps({"sinks": {"wandb": stats}}))
    text = "\n".join(describe_outputs(paths, ["wandb"]))
    assert "synced as it ran" not in text
    assert "120 records did not reach W&B" in text and f"wandb sync {online}" in text
