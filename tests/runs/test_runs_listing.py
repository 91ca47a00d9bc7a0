"""``codex-ml runs list ROOT``: through the Typer app and the installed console script, over real
runs (start_run, and one real tiny ``train-model`` run); user errors are one line and exit 2."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.tracking import start_run
from train_helpers import train_tiny

REPO = Path(__file__).resolve().parents[2]


def _run(root: Path, name: str, losses: list[float], **params: Any) -> None:
    with start_run(name, output_root=str(root), params=params, tags={"kind": "unit"}, health=False) as run:
        for step, loss in enumerate(losses):
            run.log_metrics({"train/loss": loss}, step=step)


def _list(*args: str) -> Any:
    return CliRunner().invoke(app, ["runs", "list", *args], terminal_width=200)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output root holding one real tiny ``train-model`` run (runs/tiny) and a sweep of two start_run trials."""
    root = tmp_path_factory.mktemp("out")
    train_tiny(root, "--output-root", str(root / "runs"), "--run-name", "tiny", "training.max_steps=6",
               "training.eval_interval=3", "training.checkpoint_interval=100", "training.histogram_interval=100",
               "training.sample_interval=100", "training.eval_batches=1")  # fmt: skip
    for trial, lr in (("t0", 1e-3), ("t1", 3e-3)):
        _run(root / "sweeps" / "lr", trial, [3.0, 2.0 - lr * 100], training={"lr": lr})
    return root


def test_a_real_training_run_is_listed_with_its_params_and_metrics(trained: Path) -> None:
    result = _list(str(trained), "--json")
    assert result.exit_code == 0, result.output
    by_id = {r["run_id"]: r for r in json.loads(result.output)}
    assert set(by_id) == {"runs/tiny", "sweeps/lr/t0", "sweeps/lr/t1"}
    tiny = by_id["runs/tiny"]
    assert tiny["name"] == "tiny" and tiny["status"] == "FINISHED" and tiny["duration"] > 0
    assert tiny["params"]["model.n_layer"] == 1 and tiny["params"]["training.max_steps"] == 6
    loss = tiny["metrics"]["train/loss"]
    assert loss["count"] == 6 and loss["min"] <= loss["last"] <= loss["max"]
    assert "val/loss" in tiny["metrics"]  # evaluated at steps 3 and 6
    assert by_id["sweeps/lr/t1"]["params"] == {"training.lr": 0.003} and by_id["sweeps/lr/t1"]["tags"] == {"kind": "unit"}


def test_the_table_csv_and_columns(trained: Path) -> None:
    table = _list(str(trained))
    assert table.exit_code == 0, table.output
    assert "3 runs under" in table.output and "runs/tiny" in table.output and "train/loss" in table.output
    rows = list(csv.DictReader(io.StringIO(_list(str(trained / "sweeps"), "--csv").output)))
    assert [r["run_id"] for r in rows] == ["lr/t0", "lr/t1"] and rows[0]["params.training.lr"] == "0.001"
    picked = _list(str(trained / "sweeps"), "--csv", "--columns", "name,params.training.lr,metrics.train/loss.min")
    assert picked.output.splitlines() == ["name,params.training.lr,metrics.train/loss.min", "t0,0.001,1.9", "t1,0.003,1.7"]


def test_a_run_that_grows_is_listed_with_its_new_values(tmp_path: Path) -> None:
    _run(tmp_path, "a", [3.0])
    first = json.loads(_list(str(tmp_path), "--json").output)[0]["metrics"]["train/loss"]
    assert (tmp_path / ".codex-index" / "index.json").is_file()
    with start_run("a", output_root=str(tmp_path), resume=True, health=False) as run:
        run.log_metrics({"train/loss": 1.0})
    second = json.loads(_list(str(tmp_path), "--json").output)[0]["metrics"]["train/loss"]
    assert (first["count"], first["last"]) == (1, 3.0) and (second["count"], second["last"], second["min"]) == (2, 1.0, 1.0)


@pytest.mark.parametrize(("args", "message"), [
    (["{root}/nope"], "error: {root}/nope: no such folder. Give the folder that holds your runs"),
    (["{root}"], "error: {root}: no runs found in it. Give the folder that holds your runs"),
    (["{root}/file.txt"], "error: {root}/file.txt: not a folder."),
    (["{root}/r", "--columns", "name,metrics.nope"], "error: --columns: unknown column 'metrics.nope'; available: name"),
    (["{root}/r", "--json", "--csv"], "error: --json and --csv are exclusive"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    if "/r" in args[0]:
        _run(tmp_path / "r", "a", [1.0])
    result = _list(*(a.format(root=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(root=tmp_path)), result.output


def test_the_console_script(tmp_path: Path) -> None:
    """The installed ``codex-ml`` entry point, as a user runs it (JSON on stdout; an error on stderr)."""
    _run(tmp_path, "a", [2.0, 1.0], seed=3)
    script = shutil.which("codex-ml", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run([script, "runs", "list", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["params"] == {"seed": 3} and run["metrics"]["train/loss"]["mean"] == 1.5
    bad = subprocess.run([script, "runs", "list", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith(f"error: {tmp_path / 'nope'}: no such folder") and bad.stderr.count("\n") == 1


def test_a_real_pipeline_output_is_one_run_with_its_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny pipeline run (its stage folders under checkpoints/ are not runs) beside a sweep's trial."""
    from codex_ml.pipeline.config import PipelineConfig, load_config_file
    from codex_ml.pipeline.example_data import ExampleSpec, write_example_data
    from codex_ml.pipeline.runner import run_pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = write_example_data(tmp_path / "data", ExampleSpec(corpus_docs=40, demos=60, prefs=80, seed=7))
    values = load_config_file(REPO / "configs" / "pipeline" / "tiny.yaml")
    values.update({name: str(path) for name, path in data.items()}, output_dir=str(tmp_path / "out" / "pipe"))
    run_pipeline(PipelineConfig.from_mapping(values), progress=False)
    _run(tmp_path / "out" / "sweeps" / "s", "t0", [1.0])
    assert (tmp_path / "out" / "pipe" / "checkpoints" / "M1").is_dir()
    result = _list(str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    by_id = {r["run_id"]: r for r in json.loads(result.output)}
    assert set(by_id) == {"pipe", "sweeps/s/t0"}
    pipe = by_id["pipe"]
    assert pipe["status"] == "FINISHED" and pipe["tags"]["pipeline.stage.M1"] == "trained"
    assert pipe["metrics"]["m0/train/loss"]["count"] > 0 and "rm/val/accuracy" in pipe["metrics"]
    assert any(key.startswith("pipeline.") for key in pipe["params"])
    picked = _list(str(tmp_path / "out"), "--csv", "--columns", "run_id,tags.pipeline.stage.M2,metrics.m2/val/reward.count")
    pipe_row, trial_row = picked.output.splitlines()[1:]
    assert pipe_row.startswith("pipe,trained,") and int(pipe_row.rsplit(",", 1)[1]) > 0 and trial_row == "sweeps/s/t0,,"
