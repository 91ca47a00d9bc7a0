"""The origin toolkit's metrics lines ({"ts","run_id","phase","metric","value"}, one metric per
line) are read by inspect, export and replay, with run_id and phase kept as export columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from codex_ml.cli.__main__ import app

LINES = [
    {"ts": 1000.0, "run_id": "r1", "phase": "train", "metric": "loss", "value": 3.0},
    {"ts": 1000.5, "run_id": "r1", "phase": "train", "metric": "lr", "value": 0.1},
    {"ts": 1001.0, "run_id": "r1", "phase": "train", "metric": "loss", "value": 2.0},
    {"ts": 1002.0, "run_id": "r1", "phase": "val", "metric": "loss", "value": 2.5},
    {"ts": "1970-01-01T00:16:43+00:00", "run_id": "r1", "phase": "train", "metric": "loss", "value": "NaN"},
    {"ts": 1004.0, "run_id": "r2", "phase": "val", "metric": "loss", "value": 1.5},
]


@pytest.fixture()
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "metrics.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    return path


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["monitoring", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_inspect_reads_a_legacy_file(legacy: Path) -> None:
    """One series per phase/metric; step = the point's index in its series; ts read as epoch or ISO."""
    [result] = json.loads(_cli("inspect", "--json", str(legacy)))["runs"]
    assert result["format"] == "legacy" and result["records"] == 6 and result["bad_lines"] == []
    metrics = result["metrics"]
    assert list(metrics) == ["train/loss", "train/lr", "val/loss"]
    assert metrics["train/loss"]["count"] == 3 and metrics["train/loss"]["nan"] == 1
    assert (metrics["train/loss"]["first_step"], metrics["train/loss"]["last_step"]) == (0, 2)
    assert metrics["train/loss"]["last_time"] == 1003.0
    assert metrics["val/loss"]["last"] == 1.5
    assert "train/loss" in _cli("inspect", str(legacy))
    # A directory whose metrics.ndjson is a legacy log reads the same way.
    (legacy.parent / "metrics.ndjson").write_bytes(legacy.read_bytes())
    [from_dir] = json.loads(_cli("inspect", "--json", str(legacy.parent)))["runs"]
    assert from_dir["metrics"] == metrics


def test_bad_legacy_lines_are_named_by_file_and_line(legacy: Path) -> None:
    lines = legacy.read_text().splitlines(keepends=True)
    lines.insert(2, "{not json\n")
    lines.insert(4, json.dumps({"ts": 1.0, "run_id": "r1", "phase": "train", "metric": "loss"}) + "\n")
    lines.insert(5, json.dumps({"ts": "yesterday", "run_id": "r1", "phase": "train", "metric": "x", "value": 1}) + "\n")
    legacy.write_text("".join(lines) + '{"ts": 9')  # and a torn last line
    [result] = json.loads(_cli("inspect", "--json", str(legacy)))["runs"]
    assert [bad["line"] for bad in result["bad_lines"]] == [3, 5, 6] and result["torn_tail"]
    assert result["records"] == 6
    text = _cli("inspect", str(legacy))
    assert f"{legacy}:3: not JSON" in text and f"{legacy}:5:" in text and "'value'" in text


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_keeps_run_id_and_phase(legacy: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"long.{fmt}"
    _cli("export", str(legacy), str(out))
    if fmt == "parquet":
        table = pq.read_table(out).to_pandas()
    elif fmt == "csv":
        table = pd.read_csv(out)
    else:
        table = pd.DataFrame([orjson.loads(line) for line in out.read_bytes().splitlines()])
    assert list(table.columns) == ["step", "time", "key", "value", "run_id", "phase"]
    keys = ["train/loss", "train/lr", "train/loss", "val/loss", "train/loss", "val/loss"]
    assert list(table["key"].astype(str)) == keys
    assert list(table["run_id"]) == ["r1", "r1", "r1", "r1", "r1", "r2"]
    assert list(table["phase"]) == ["train", "train", "train", "val", "train", "val"]
    assert list(table["step"]) == [0, 0, 1, 0, 2, 1]
    value = table["value"][4]
    assert (value == "NaN") if fmt == "jsonl" else math.isnan(value)


def test_wide_export_keeps_the_latest_run_id_and_phase_of_each_step(legacy: Path, tmp_path: Path) -> None:
    out = tmp_path / "wide.parquet"
    _cli("export", str(legacy), str(out), "--wide")
    table = pq.read_table(out).to_pandas()
    assert list(table.columns) == ["step", "time", "run_id", "phase", "train/loss", "train/lr", "val/loss"]
    assert list(table["step"]) == [0, 1, 2]
    assert list(table["run_id"]) == ["r1", "r2", "r1"] and list(table["phase"]) == ["val", "val", "train"]


def test_replay_a_legacy_file_into_tensorboard(legacy: Path) -> None:
    """`export --to tensorboard` sends every point once; a second replay sends nothing."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    first = json.loads(_cli("export", str(legacy), "--to", "tensorboard", "--json"))
    assert first["sent"] == 6 and first["points"] == 6
    acc = ea.EventAccumulator(str(legacy.parent / "tensorboard"), size_guidance={ea.SCALARS: 0},
                              purge_orphaned_data=False)  # fmt: skip
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["train/loss", "train/lr", "val/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("val/loss")] == [(0, 2.5), (1, 1.5)]
    again = json.loads(_cli("export", str(legacy), "--to", "tensorboard", "--json"))
    assert again["sent"] == 0


def test_a_legacy_line_with_its_own_step_keeps_it(tmp_path: Path) -> None:
    from codex_ml.monitoring.loading import load

    path = tmp_path / "stepped.jsonl"
    lines = [{"ts": 1.0 + i, "metric": "loss", "value": i, "step": 10 * i} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    data = load(path)
    assert data.loader == "legacy" and data.series["loss"].steps.tolist() == [0, 10, 20]
    assert data.extra_columns["phase"].tolist() == ["", "", ""]  # absent phase: empty, key without a prefix
