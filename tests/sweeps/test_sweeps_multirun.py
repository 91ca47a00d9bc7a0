"""Hydra's basic sweeper: each combination is a complete run in sweeps/<sweep>/trial-<N>, resumable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sweep_helpers import FAST, metric_points, run_cli, run_json

from codex_ml.sweeps.naming import default_sweep_name, with_sweep_name
from codex_ml.sweeps.objective import SweepError, objective_value


def test_default_name_is_the_same_for_the_same_command() -> None:
    """Stable across re-runs and argument order; n_trials does not make another sweep; other values do."""
    args = ["-m", "training@_global_=tiny", "++training.lr=1e-3,3e-3", "++model.n_layer=1,2"]
    name = default_sweep_name(args)
    assert re.fullmatch(r"tiny-[0-9a-f]{8}", name)
    assert default_sweep_name(list(reversed(args))) == name
    assert default_sweep_name([*args, "++hydra.sweeper.n_trials=9"]) == name
    assert default_sweep_name([*args[:-1], "++model.n_layer=1,4"]) != name
    assert default_sweep_name(["-m", "++training.lr=1e-3,3e-3"]).startswith("base-")


def test_a_given_name_wins() -> None:
    """sweep.name=X is kept; tracking.sweep=X names the sweep too."""
    assert with_sweep_name(["-m", "++sweep.name=mine"]) == (["-m", "++sweep.name=mine"], "mine")
    assert with_sweep_name(["-m", "++tracking.sweep=lr"]) == (["-m", "++tracking.sweep=lr", "++sweep.name=lr"], "lr")


def test_objective_reduces_the_logged_metric(tmp_path: Path) -> None:
    """min/max/last/mean over the finite values; a missing metric or a bad reduction is a SweepError."""
    (tmp_path / "metrics.ndjson").write_text(
        '{"step": 0, "time": 1, "metrics": {"val/loss": 3.0}}\n{"step": 5, "time": 2, "metrics": {"val/loss": 2.0}}\n'
        '{"step": 9, "time": 3, "metrics": {"val/loss": 2.5, "train/loss": 1.0}}\n')
    got = {r: objective_value(tmp_path, "val/loss", r) for r in ("min", "max", "last", "mean")}
    assert got == {"min": 2.0, "max": 3.0, "last": 2.5, "mean": 2.5}
    with pytest.raises(SweepError, match="no finite value of metric 'val/acc'"):
        objective_value(tmp_path, "val/acc", "min")
    with pytest.raises(SweepError, match="sweep.reduce='median'"):
        objective_value(tmp_path, "val/loss", "median")


def test_basic_multirun_runs_each_combination_once(tmp_path: Path) -> None:
    """2 x 2 combinations: four complete runs with the sweep/trial recorded; a re-run trains nothing."""
    args = ["-m", *FAST, "training.max_steps=10", "training.lr=1e-3,3e-3", "model.n_layer=1,2"]
    done = run_cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    name = re.search(r"\[sweep\] (tiny-[0-9a-f]{8}) ", done.stderr).group(1)
    sweep = tmp_path / "sweeps" / name
    trials = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert trials == ["trial-000", "trial-001", "trial-002", "trial-003"]
    assert (sweep / "multirun.yaml").is_file()
    seen = set()
    for trial in trials:
        state = run_json(sweep / trial)
        assert (state["status"], state["sweep"], state["trial"], len(state["sessions"])) == ("FINISHED", name, trial, 1)
        params = (sweep / trial / "params.json").read_text()
        lr = re.search(r'"training.lr": ([0-9.e-]+)', params).group(1)
        layers = re.search(r'"model.n_layer": (\d)', params).group(1)
        seen.add((float(lr), int(layers)))
        best = min(v for _, v in metric_points(sweep / trial, "val/loss"))
        assert f"[sweep] {trial} (sweeps/{name}/{trial}): val/loss min = {best:.4f}" in done.stderr
    assert seen == {(1e-3, 1), (1e-3, 2), (3e-3, 1), (3e-3, 2)}
    stamps = {t: (sweep / t / "metrics.ndjson").stat().st_mtime_ns for t in trials}

    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished before, not trained again") == 4
    for trial in trials:
        assert (sweep / trial / "metrics.ndjson").stat().st_mtime_ns == stamps[trial]
        assert len(run_json(sweep / trial)["sessions"]) == 1


def test_a_trial_dir_of_another_command_is_refused(tmp_path: Path) -> None:
    """The same sweep.name reused with other values: refused before training, whatever the spelling of the value."""
    from codex_ml.sweeps.trial import _check_same_trial

    (tmp_path / "params.json").write_text('{"training.lr": 0.001, "model.n_layer": 2, "data.tokenizer": "char"}')
    _check_same_trial(tmp_path, ["++training.lr=1e-3", "model.n_layer=2", "data.tokenizer='char'", "++x.y=1"])
    with pytest.raises(SweepError, match=r"trained with training.lr=0.001, this job has training.lr=3e-3"):
        _check_same_trial(tmp_path, ["++training.lr=3e-3"])
