"""Readers find every system-metrics file of a run (all ranks), wherever the run wrote it.

The trainer samples into ``checkpoints/system_metrics.jsonl`` (AUTO is next to the
checkpoints), a custom path can be anywhere, and under DDP rank k writes
``system_metrics.rank<k>.jsonl`` beside rank 0's file. The run records the path in run.json
when its sampler starts; runs written before that are found in the run root and checkpoints/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app
from codex_ml.monitoring.inspect import inspect_paths
from codex_ml.monitoring.runs import resolve
from codex_ml.tracking import start_run
from train_helpers import train_tiny

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``train-model --system-metrics AUTO`` tiny run."""
    root = tmp_path_factory.mktemp("trained")
    train_tiny(root, "--output-root", str(root), "--run-name", "sys", "--system-metrics", "AUTO",
               "--system-metrics-interval", "0.1", "training.max_steps=20", "training.eval_interval=10",
               "training.checkpoint_interval=10", "training.sample_tokens=8", "training.eval_batches=2")  # fmt: skip
    run = root / "sys"
    assert (run / "checkpoints" / "system_metrics.jsonl").stat().st_size > 0
    return run


def _monitoring(*args: str) -> str:
    result = CliRunner().invoke(app, ["monitoring", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_inspect_shows_the_trainers_system_metrics(trained: Path) -> None:
    """`monitoring inspect` of a train-model run reports the samples under checkpoints/."""
    [result] = json.loads(_monitoring("inspect", "--json", str(trained)))["runs"]
    system = result["system"]
    assert system is not None and system["records"] >= 1
    assert system["file"] == str(trained / "checkpoints" / "system_metrics.jsonl")
    assert "system/cpu/percent" in system["metrics"]
    assert "system metrics" in _monitoring("inspect", str(trained))


def test_plot_draws_the_trainers_system_panels(trained: Path, tmp_path: Path) -> None:
    """`monitoring plot` adds system panels for a train-model run."""
    with_system = _monitoring("plot", str(trained), "-o", str(tmp_path / "a.png"))
    without = _monitoring("plot", str(trained), "-o", str(tmp_path / "b.png"), "--no-system")
    panels = [int(text.split("(")[1].split()[0]) for text in (with_system, without)]
    assert panels[0] > panels[1]


def test_run_json_records_where_the_sampler_writes(tmp_path: Path) -> None:
    """A custom path (here outside the run) is recorded in run.json and found by every reader."""
    elsewhere = tmp_path / "telemetry" / "sys.jsonl"
    with start_run("custom", output_root=tmp_path / "runs", flush_interval=0.05, system_metrics=str(elsewhere),
                   system_metrics_interval=0.1) as run:  # fmt: skip
        run.log_metrics({"loss": 1.0}, step=0)
        time.sleep(0.3)
    state = json.loads(run.paths.run_file.read_text())
    assert state["system_metrics"] == [str(elsewhere)]
    source = resolve(run.paths.root)
    assert source.system_files == [elsewhere]
    [result] = inspect_paths([run.paths.root])
    assert result["system"]["records"] >= 1


def test_a_path_inside_the_run_is_recorded_relative(tmp_path: Path) -> None:
    """Inside the run directory the record is relative, so a moved run still finds its samples."""
    with start_run("rel", output_root=tmp_path / "runs", flush_interval=0.05, system_metrics="AUTO",
                   system_metrics_interval=0.1, checkpoint_dir=tmp_path / "runs" / "rel" / "checkpoints") as run:
        run.log_metrics({"loss": 1.0}, step=0)
        time.sleep(0.2)
    assert json.loads(run.paths.run_file.read_text())["system_metrics"] == ["checkpoints/system_metrics.jsonl"]
    moved = run.paths.root.rename(tmp_path / "moved")
    assert resolve(moved).system_files == [moved / "checkpoints" / "system_metrics.jsonl"]


def _sample(rank: int | None, cpu: float) -> str:
    record = {"v": 1, "time": 100.0, "sample": 0, "cpu": {"percent": cpu}}
    if rank is not None:
        record["rank"] = rank
    return json.dumps(record) + "\n"


def test_every_rank_is_found_and_shown(tmp_path: Path) -> None:
    """DDP: rank 0's file and the rank<k> files beside it, all read; an old run without a record too."""
    run = tmp_path / "ddp"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.ndjson").write_text('{"v": 1, "step": 0, "time": 100.0, "metrics": {"loss": 1.0}}\n')
    (run / "run.json").write_text(json.dumps({"run_name": "ddp", "run_id": "x"}))  # written before the record existed
    names = ("system_metrics.jsonl", "system_metrics.rank1.jsonl", "system_metrics.rank2.jsonl")
    for rank, name in enumerate(names):
        (run / "checkpoints" / name).write_text(_sample(rank, 10.0 * (rank + 1)))
    source = resolve(run)
    assert [p.name for p in source.system_files] == ["system_metrics.jsonl", "system_metrics.rank1.jsonl",
                                                     "system_metrics.rank2.jsonl"]  # fmt: skip
    [result] = inspect_paths([run])
    files = result["system"]["files"]
    assert [f["metrics"]["system/cpu/percent"]["last"] for f in files] == [10.0, 20.0, 30.0]
    text = _monitoring("inspect", str(run))
    assert "system_metrics.rank2.jsonl" in text and "system_metrics.rank1.jsonl" in text
    # The checkpoints folder given alone: rank 0's file is the main input, the other ranks follow.
    [folder] = inspect_paths([run / "checkpoints"])
    assert folder["kind"] == "system" and [Path(f["file"]).name for f in folder["system"]["files"]] == [
        "system_metrics.rank1.jsonl", "system_metrics.rank2.jsonl"]


def test_plot_and_replay_of_a_ddp_run(tmp_path: Path) -> None:
    """plot draws every rank's file; replay sends only rank 0's samples (the ones training forwards)."""
    from codex_ml.monitoring.plot import plot
    from codex_ml.monitoring.replay import replay

    run = tmp_path / "ddp"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.ndjson").write_text('{"v": 1, "step": 0, "time": 100.0, "metrics": {"loss": 1.0}}\n')
    for rank, name in ((0, "system_metrics.jsonl"), (1, "system_metrics.rank1.jsonl")):
        (run / "checkpoints" / name).write_text(_sample(rank, 10.0 * (rank + 1)))
    assert plot([run], tmp_path / "p.png") == 2  # loss + system/cpu/percent (two curves)
    result = replay(run, "tensorboard", progress=False)
    assert result.points == 2 and result.sent == 2  # loss and rank 0's cpu sample; rank 1 stays in its file
