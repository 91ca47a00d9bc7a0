"""A sweep in W&B (offline): the trials share ``group=<sweep>``, job type ``trial``, named after the trial.

Read back from the offline ``.wandb`` run files through W&B's own Record protobufs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codex_ml.backends.wandb import find_run_files, read_config, records_of
from codex_ml.tracking import TrackingConfig, start_run


@pytest.fixture(autouse=True)
def _offline(clean_backend_env: None) -> None:
    """W&B offline and quiet, nothing inherited (tests/conftest.py)."""


def _run_records(path: Path) -> list[Any]:
    return records_of(path, "run")


def _tags(path: Path) -> set[str]:
    return {tag for run in _run_records(path) for tag in run.tags}


def test_trials_share_the_sweeps_group(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "lr"
    for trial, lr in (("trial-0", 1e-3), ("trial-1", 3e-3)):
        config = TrackingConfig(output_root=str(sweep_dir), sweep="lr", trial=trial, enable_wandb=True,
                                flush_interval=0.05)  # fmt: skip
        with start_run(trial, config=config, params={"training": {"lr": lr}}) as run:
            run.log_metrics({"val/loss": 1.5}, step=0)
        assert run.close_report.complete, run.close_report

        (path,) = find_run_files(sweep_dir / trial)
        records = _run_records(path)
        assert records, "no run record in the .wandb file"
        assert {(r.run_group, r.job_type, r.display_name) for r in records} == {("lr", "trial", trial)}
        assert {"sweep=lr", f"trial={trial}"} <= _tags(path)
        assert read_config(path)["training.lr"] == lr
        assert json.loads((sweep_dir / trial / "run.json").read_text())["backends"]["wandb"]["group"] == "lr"


def test_a_run_outside_a_sweep_has_no_group(tmp_path: Path) -> None:
    with start_run("plain", output_root=tmp_path, enable_wandb=True, flush_interval=0.05) as run:
        run.log_metrics({"x": 1.0}, step=0)
    (path,) = find_run_files(run.paths.root)
    assert {(r.run_group, r.job_type) for r in _run_records(path)} == {("", "")}
    assert not any(tag.startswith(("sweep=", "trial=")) for tag in _tags(path))
