"""`codex-ml sweep SPEC.yaml`: a sweep file becomes the Hydra multirun it stands for."""

from __future__ import annotations

import shutil
import sys
import subprocess
from pathlib import Path

import pytest
from sweep_helpers import clean_env, run_json

from codex_ml.sweeps.objective import SweepError
from codex_ml.sweeps.spec import spec_arguments

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "sweep_files" / "lr_depth.yaml"


def test_the_shipped_example_translates() -> None:
    """Every key becomes one override of python -m codex_ml.cli.main -m ...; a list is Optuna's choice()."""
    assert spec_arguments(EXAMPLE) == [
        "-m", "hydra/sweeper=optuna", "training=tiny", "sweep.name=lr-depth", "sweep.objective=val/loss",
        "sweep.reduce=min", "hydra/sweeper/sampler=tpe", "hydra/sweeper/pruner=median", "hydra.sweeper.n_trials=12",
        "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0", "hydra.sweeper.pruner.n_startup_trials=4",
        "training.lr=tag(log, interval(1e-4, 1e-2))", "model.n_layer=choice(1,2)", "training.max_steps=100",
        "training.eval_interval=20"]
    assert EXAMPLE.read_text().startswith("# Run: codex-ml sweep configs/sweep_files/lr_depth.yaml")


def test_basic_sweeper_lists_and_scalars(tmp_path: Path) -> None:
    """The basic sweeper gets comma lists; booleans and null are written the way Hydra reads them."""
    spec = tmp_path / "s.yaml"
    spec.write_text("params: {training.lr: [0.001, 0.003]}\nset: {training.progress: false, data.path: null}\n")
    assert spec_arguments(spec) == ["-m", "training.lr=0.001,0.003", "training.progress=false", "data.path=null"]


@pytest.mark.parametrize(("text", "message"), [
    ("trials: 3\n", r"unknown key\(s\) trials \(valid: name, sweeper"),
    ("optuna: {n_trials: 3}\n", "an optuna: section needs sweeper: optuna"),
    ("sweeper: grid\n", "sweeper: 'grid': use basic or optuna"),
    ("sweeper: optuna\noptuna: {trials: 3}\n", r"optuna: unknown key\(s\) trials"),
    ("- a\n", "a sweep file is a mapping"),
    ("params: [1]\n", "params: must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_files_are_one_error(tmp_path: Path, text: str, message: str) -> None:
    """What is wrong and where, before anything runs."""
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    with pytest.raises(SweepError, match=message):
        spec_arguments(spec)


def test_codex_ml_sweep_runs_the_file(tmp_path: Path) -> None:
    """The console script: a 2-trial basic sweep from a file, extra overrides and a tracking flag after it."""
    spec = tmp_path / "two.yaml"
    spec.write_text("name: two\ntraining: tiny\nparams: {model.n_layer: [1, 2]}\n"
                    "set: {training.max_steps: 5, training.eval_interval: 5, training.progress: false}\n")
    codex_ml = shutil.which("codex-ml", path=str(Path(sys.executable).parent))
    done = subprocess.run([codex_ml, "sweep", str(spec), "training.eval_batches=2", "--enable-tensorboard"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for trial in ("trial-000", "trial-001"):
        run = tmp_path / "sweeps" / "two" / trial
        assert run_json(run)["status"] == "FINISHED" and run_json(run)["sinks"] == ["tensorboard"]
        assert '"training.eval_batches": 2' in (run / "params.json").read_text()
    bad = subprocess.run([codex_ml, "sweep", str(tmp_path / "missing.yaml")], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read the sweep file")
