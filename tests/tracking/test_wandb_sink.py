"""W&B sink, offline: the .wandb run file read back through W&B's own Record protobufs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codex_ml.tracking import start_run
from codex_ml.rundir.reader import metric_series
from codex_ml.backends.wandb import find_run_files, read_config, read_history, records_of


def _wandb_run(tmp_path: Path, name: str, **options: Any):
    return start_run(name, output_root=tmp_path, flush_interval=0.05, enable_wandb=True, **options)


def _records(path: Path, kind: str) -> list[Any]:
    return records_of(path, kind)


def _by_step(rows: list[dict[str, Any]], key: str) -> dict[int, Any]:
    return {row["step"]: row[key] for row in rows if key in row}


def test_offline_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)  # unset: codex_ml runs W&B offline
    monkeypatch.setenv("WANDB_PROJECT", "codex-proj-from-env")
    losses = [2.0, math.nan, 0.5, 0.25, 0.125, 1e-9]
    params = {"model": {"n_layer": 4, "n_head": 2}, "lr": 3e-4, "name": "tiny"}
    weights = np.random.default_rng(1).normal(size=500)

    with _wandb_run(tmp_path, "wb", params=params) as run:
        for step, loss in enumerate(losses):
            run.log_metrics({"train/loss": loss, "train/tokens": step * 128}, step=step * 2)
        run.log_histogram("weights/w", weights, step=4)
    assert run.close_report.complete, run.close_report

    files = find_run_files(run.paths.root)
    assert len(files) == 1
    assert files[0].parent.name.startswith("offline-run-")
    assert files[0].parent.parent == run.paths.root / "wandb"
    assert files[0].name.startswith("run-") and files[0].suffix == ".wandb"
    backend = json.loads(run.paths.run_file.read_text())["backends"]["wandb"]
    assert backend["project"] == "codex-proj-from-env"
    assert files[0].name == f"run-{backend['run_id']}.wandb"

    rows = read_history(files[0])
    loss = _by_step(rows, "train/loss")
    assert sorted(loss) == [0, 2, 4, 6, 8, 10]
    for step, expected in zip(range(0, 12, 2), losses):
        assert math.isnan(loss[step]) if math.isnan(expected) else loss[step] == expected
    assert _by_step(rows, "train/tokens") == {s * 2: s * 128 for s in range(6)}

    hist = _by_step(rows, "weights/w/_type")
    assert hist == {4: "histogram"}
    hist_row = next(row for row in rows if "weights/w/values" in row)
    assert hist_row["step"] == 4
    assert sum(hist_row["weights/w/values"]) == 500
    assert len(hist_row["weights/w/bins"]) == len(hist_row["weights/w/values"]) + 1
    assert hist_row["weights/w/bins"][0] == pytest.approx(weights.min())
    assert hist_row["weights/w/bins"][-1] == pytest.approx(weights.max())

    config = read_config(files[0])
    assert {k: config[k] for k in ("model.n_layer", "model.n_head", "lr", "name")} == {
        "model.n_layer": 4, "model.n_head": 2, "lr": 3e-4, "name": "tiny",
    }
    (exit_record,) = _records(files[0], "exit")
    assert exit_record.exit_code == 0
    (run_record,) = {r.run_id: r for r in _records(files[0], "run")}.values()
    assert run_record.project == "codex-proj-from-env"


def test_failed_run_gives_wandb_a_non_zero_exit_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with _wandb_run(tmp_path, "wb-failed") as run:
            run.log_metric("loss", 1.0, step=0)
            raise ValueError("diverged")
    assert json.loads(run.paths.run_file.read_text())["status"] == "FAILED"
    (path,) = find_run_files(run.paths.root)
    (exit_record,) = _records(path, "exit")
    assert exit_record.exit_code != 0
    assert _by_step(read_history(path), "loss") == {0: 1.0}


def test_wandb_mode_disabled_writes_no_run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with _wandb_run(tmp_path, "wb-off") as run:
        for step in range(50):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        run.log_histogram("h", [1.0, 2.0, 3.0], step=3)
        run.log_text("t", "hello", step=4)
        run.log_params({"a": 1})
    report = run.close_report
    assert report.complete and report.status == "FINISHED", report
    assert report.sinks["wandb"]["undelivered"] == 0 and not report.sinks["wandb"]["disabled"]
    assert list(run.paths.root.rglob("*.wandb")) == []
    assert metric_series(run.paths.metrics)["loss"] == [(s, 1.0 / (s + 1)) for s in range(50)]
    summary = json.loads(run.paths.summary.read_text())
    assert summary["status"] == "FINISHED" and summary["last_step"] == 49 and summary["errors"] == []


def test_artifact_is_copied_into_the_offline_run_files(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A logged artifact lands as a real file (not a symlink) in the W&B run's files folder,
    which `wandb sync` uploads, and W&B prints no warning about it."""
    source = tmp_path / "notes.txt"
    source.write_text("hello from codex_ml\n")
    with _wandb_run(tmp_path, "artifact") as run:
        run.log_artifact(source)
        run.log_metrics({"loss": 1.0}, step=0)
    (copy,) = (run.paths.root / "wandb").glob("offline-run-*/files/notes.txt")
    assert not copy.is_symlink() and copy.read_text() == "hello from codex_ml\n"
    err = capfd.readouterr().err
    assert "Symlinked" not in err and "[monitoring-error]" not in err
