"""summary.json has one writer, Run.close: a caller's extra sections (the pipeline's report) go in
through Run.add_summary and are written with the run's own keys, which they may not replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_ml.rundir.run_files import read_summary
from codex_ml.tracking import start_run


def test_added_sections_are_written_by_close_next_to_the_runs_own_keys(tmp_path: Path) -> None:
    run = start_run("sections", output_root=str(tmp_path))
    run.log_metrics({"loss": 2.0}, step=1)
    run.add_summary({"stages": {"M0": {"status": "trained"}}, "seed": 3})
    run.add_summary({"seed": 4})  # a later section of the same name replaces the earlier one
    run.close()
    summary = read_summary(run.paths)
    assert summary["stages"] == {"M0": {"status": "trained"}}
    assert summary["seed"] == 4
    assert summary["status"] == "FINISHED" and summary["records"] >= 1 and "loss" in summary["metrics"]
    assert run.summary is not None and run.summary["seed"] == 4


def test_a_section_may_not_replace_the_runs_own_keys(tmp_path: Path) -> None:
    run = start_run("clash", output_root=str(tmp_path))
    try:
        with pytest.raises(ValueError, match="status"):
            run.add_summary({"status": "GREAT", "extra": 1})
    finally:
        run.close()
    assert read_summary(run.paths)["status"] == "FINISHED"
    assert "extra" not in read_summary(run.paths)
