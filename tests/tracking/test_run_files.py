"""One module reads and writes a run directory's JSON files, and every file name comes from RunPaths."""

from __future__ import annotations

import json
from pathlib import Path

from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.run_files import read_json, read_run_json, read_summary, write_json_atomic


def test_readers_give_an_empty_object_for_missing_broken_or_non_object_files(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    assert read_run_json(tmp_path) == {} and read_summary(paths) == {}
    paths.run_file.write_text("{not json")
    paths.summary.write_text("[1, 2]")
    assert read_run_json(paths) == {} and read_summary(tmp_path) == {}


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    write_json_atomic(paths.run_file, {"status": "RUNNING", "loss": float("nan")})
    assert read_run_json(paths) == {"status": "RUNNING", "loss": "NaN"}  # JSON has no NaN: encoded as the NDJSON does
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind
    assert json.loads(paths.run_file.read_text())["status"] == "RUNNING"


def test_every_reader_of_run_json_is_the_one_module() -> None:
    from codex_ml.monitoring import runs, tail, ui
    from codex_ml.tracking import dispatcher, run, viewing

    assert runs.read_json is tail.read_json is ui.read_json is viewing.read_json is read_json
    assert dispatcher._load_json is run._load_json is read_json
    assert dispatcher.write_json_atomic is run.write_json_atomic is write_json_atomic


def test_run_paths_name_the_files_the_jobs_use(tmp_path: Path) -> None:
    from codex_ml.monitoring.system_metrics import AUTO_FILE, resolve_system_metrics_path
    from codex_ml.tracking.system_files import FALLBACK_DIRS

    paths = RunPaths(tmp_path)
    assert resolve_system_metrics_path("AUTO", tmp_path) == paths.system_metrics
    assert AUTO_FILE == paths.system_metrics.name
    assert paths.checkpoints.name in FALLBACK_DIRS
    assert paths.lock.name == "run.lock" and paths.tokenizer.name == "tokenizer"
