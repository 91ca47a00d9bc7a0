"""deploy/deploy_codex_pipeline.py: help, every sink end to end on the tiny config, bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codex_ml.pipeline.example_data import ExampleSpec, write_example_data

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "deploy_codex_pipeline.py"
TINY = REPO / "configs" / "pipeline" / "tiny.yaml"


@pytest.fixture(scope="module")
def deploy():
    spec = importlib.util.spec_from_file_location("deploy_codex_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return write_example_data(tmp_path / "data", ExampleSpec(corpus_docs=30, demos=40, prefs=60))


def _args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), "--corpus", str(data["corpus"]), "--demos", str(data["demos"]),
            "--prefs", str(data["prefs"]), "--output-dir", str(out), "--no-progress", *extra]


def test_help_lists_pipeline_and_tracking_flags() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--corpus", "--demos", "--prefs", "--output-dir", "--seed", "--config", "--force", "--method",
                 "KEY=VALUE", "--enable-wandb", "--mlflow-enable", "--mlflow-tracking-uri", "--system-metrics"):
        assert flag in result.stdout
    for refused in ("--run-name", "--output-root"):  # the run directory is --output-dir
        assert refused not in result.stdout


def test_every_sink_gets_every_stage(deploy, data: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = deploy.main(_args(data, out, "--enable-tensorboard", "--mlflow-enable", "--enable-wandb",
                             "--method", "dpo", "sft.steps=5"))
    assert code == 0
    printed = capsys.readouterr().out  # where each sink's data went and the command that views it
    for needle in (f"Run directory:  {out}", "tensorboard --logdir", "mlflow ui", "wandb sync"):
        assert needle in printed, needle
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["preference"]["method"] == "dpo" and summary["config"]["sft"]["steps"] == 5
    assert summary["sinks"]["mlflow"]["undelivered"] == 0 and summary["sinks"]["wandb"]["undelivered"] == 0
    assert list((out / "tensorboard").iterdir()) and list((out / "wandb").glob("offline-run-*"))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(out / "mlruns"))
    run_id = json.loads((out / "run.json").read_text())["backends"]["mlflow"]["run_id"]
    mlrun = client.get_run(run_id)
    assert {mlrun.data.tags[f"pipeline.stage.{s}"] for s in ("M0", "M1", "RM", "M2")} == {"trained"}
    assert {"m0/val/loss", "m1/val/completion_loss", "rm/val/accuracy", "m2/val/reward", "m2/val/kl"} <= set(mlrun.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"M0-checkpoint.pt", "RM-stage.json", "M2-checkpoint.pt"} <= artifacts


def test_bad_line_fails_before_training(deploy, data: dict[str, Path], tmp_path: Path, capsys) -> None:
    with open(data["prefs"], "a", encoding="utf-8") as handle:
        handle.write('["1+1=", "2", "3"]\n')
    lines = data["prefs"].read_text().count("\n")
    out = tmp_path / "run"
    assert deploy.main(_args(data, out)) == 2
    assert f"{data['prefs']}:{lines}: expected" in capsys.readouterr().err
    assert not out.exists()


def test_missing_file_and_unknown_key_are_clear_errors(deploy, data: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert deploy.main(_args(data, tmp_path / "run", "--demos", str(tmp_path / "missing.jsonl"))) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert deploy.main(_args(data, tmp_path / "run", "sft.stepz=3")) == 2
    assert "sft.stepz: unknown key" in capsys.readouterr().err


def test_health_settings_reach_the_pipeline_run(deploy, data: dict[str, Path], tmp_path: Path) -> None:
    """health.RULE.KEY=VALUE overrides configure the rules of the pipeline's run; an action the pipeline
    cannot take (it records events only) is refused before anything is written."""
    out = tmp_path / "run"
    assert deploy.main(_args(data, out, "health.spike.enabled=false", "health.stall.floor_s=120")) == 0
    health = json.loads((out / "summary.json").read_text())["health"]
    assert "spike" not in health["rules"] and "nonfinite" in health["rules"]
    refused = tmp_path / "refused"
    assert deploy.main(_args(data, refused, "health.nonfinite.action=stop")) == 2
    assert not (refused / "metrics.ndjson").exists()
