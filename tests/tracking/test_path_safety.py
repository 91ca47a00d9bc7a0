"""Run and experiment names never write outside the output root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codex_ml.errors import RunNameError
from codex_ml.tracking import start_run


@pytest.mark.parametrize("name", ["../../x", "..", "/etc/x", "a/b", "nul\x00x", "C:\\x", "C:x", "a\\..\\b", ""])
def test_escaping_run_names_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    with pytest.raises(RunNameError):
        start_run(name, output_root=root)
    assert not root.exists() or list(root.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["root"])


def _files(top: Path) -> set[str]:
    return {str(Path(d) / f) for d, _, files in os.walk(top) for f in files}


def test_hostile_experiment_name_stays_inside_the_run(tmp_path: Path) -> None:
    """The MLflow file store names folders by experiment id, so an experiment called
    '../../escape' is only a label: every file lands under the run directory."""
    root = tmp_path / "root"
    outside_before = _files(tmp_path.parent) - _files(tmp_path)
    with start_run("exp", output_root=root, enable_mlflow=True, mlflow_experiment="../../escape") as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert run.close_report.complete
    written = _files(tmp_path)
    assert written and all(path.startswith(str(run.paths.root)) for path in written)
    assert _files(tmp_path.parent) - _files(tmp_path) == outside_before
