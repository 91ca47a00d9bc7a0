"""An NDJSON file renamed or deleted under a live run: later records go to a new file at the
documented path, and the move is reported once (on stderr and in summary.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codex_ml.tracking import start_run


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _ndjson_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[monitoring") and "ndjson:" in line]


@pytest.mark.parametrize("how", ["rename", "delete"])
def test_metrics_file_moved_under_a_live_run_is_recreated(tmp_path: Path, how: str,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    """Log, rename (or delete) metrics.ndjson, log, close: the later records are in a new
    metrics.ndjson, the earlier ones stayed in the moved file, and it is said once."""
    run = start_run("moved", output_root=str(tmp_path), flush_interval=0.02)
    for step in range(5):
        run.log_metrics({"loss": float(step)}, step=step)
    run.flush()
    moved = tmp_path / "moved" / "metrics.old"
    if how == "rename":
        os.rename(run.paths.metrics, moved)
    else:
        os.unlink(run.paths.metrics)
    for step in range(5, 10):
        run.log_metrics({"loss": float(step)}, step=step)
        run.flush()  # several writes after the move: still one message
    run.close()
    assert _steps(run.paths.metrics) == list(range(5, 10))
    if how == "rename":
        assert _steps(moved) == list(range(5))
    said = _ndjson_lines(capfd.readouterr().err)
    assert len(said) == 1 and "metrics.ndjson" in said[0] and "renamed or deleted" in said[0], said
    summary = json.loads(run.paths.summary.read_text())
    assert [e["sink"] for e in summary["errors"]] == ["ndjson"]


def test_text_and_histogram_files_are_followed_too(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Every NDJSON file of the run is checked, each reported on its own."""
    run = start_run("others", output_root=str(tmp_path), flush_interval=0.02)
    run.log_text("sample", "before", step=0)
    run.log_histogram("w", [1.0, 2.0], step=0)
    run.flush()
    os.rename(run.paths.text, tmp_path / "text.old")
    os.unlink(run.paths.histograms)
    run.log_text("sample", "after", step=1)
    run.log_histogram("w", [3.0], step=1)
    run.close()
    assert [json.loads(line)["text"] for line in run.paths.text.read_text().splitlines()] == ["after"]
    assert _steps(run.paths.histograms) == [1]
    said = _ndjson_lines(capfd.readouterr().err)
    assert sorted(line.split("ndjson: ")[1].split()[0] for line in said) == ["histograms.ndjson", "text.ndjson"]


def test_a_file_that_stays_put_is_never_reported(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The check costs one stat per write and says nothing when nothing moved (a chdir included)."""
    here = os.getcwd()
    (tmp_path / "elsewhere").mkdir()
    try:
        os.chdir(tmp_path)
        run = start_run("still", output_root="runs", flush_interval=0.02)  # a relative root
        os.chdir(tmp_path / "elsewhere")
        for step in range(20):
            run.log_metrics({"loss": 1.0}, step=step)
            run.flush()
        os.chdir(tmp_path)
        run.close()
    finally:
        os.chdir(here)
    assert _steps(tmp_path / "runs" / "still" / "metrics.ndjson") == list(range(20))
    assert _ndjson_lines(capfd.readouterr().err) == []


def test_a_moved_run_directory_keeps_its_records(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The whole run directory moved away and a new one made under the old name (another run):
    the records stay with their run, in the moved directory, never in the new one."""
    run = start_run("aside", output_root=str(tmp_path), flush_interval=0.02)
    run.log_metrics({"loss": 1.0}, step=0)
    run.flush()
    os.rename(tmp_path / "aside", tmp_path / "aside.old")
    (tmp_path / "aside").mkdir()
    (tmp_path / "aside" / "metrics.ndjson").write_text('{"v": 1, "step": 7, "time": 0, "metrics": {"other": 1}}\n')
    run.log_metrics({"loss": 0.5}, step=1)
    run.flush()
    run.log_metrics({"loss": 0.25}, step=2)
    run.flush()
    assert _steps(tmp_path / "aside.old" / "metrics.ndjson") == [0, 1, 2]
    assert _steps(tmp_path / "aside" / "metrics.ndjson") == [7]
    said = _ndjson_lines(capfd.readouterr().err)
    assert len(said) == 1 and "run directory" in said[0], said
    os.rename(tmp_path / "aside", tmp_path / "other")
    os.rename(tmp_path / "aside.old", tmp_path / "aside")  # back in place before its closing files
    run.close()
