"""The shipped sweeper configs compose and build real Optuna objects; the CLI maps hydra/sweeper=optuna to ours."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from codex_ml.cli.main import split_tracking_flags
from codex_ml.sweeps.optuna_sweep import build_quietly

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRUNERS = sorted(p.stem for p in (CONFIGS / "hydra" / "sweeper" / "pruner").glob("*.yaml"))


def _sweeper(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=codex_optuna", "sweep.name=s", *overrides],
                      return_hydra_config=True)
    return cfg.hydra.sweeper


def test_optuna_means_ours() -> None:
    """`hydra/sweeper=optuna` on the command line selects configs/hydra/sweeper/codex_optuna.yaml."""
    assert split_tracking_flags(["-m", "hydra/sweeper=optuna", "hydra/sweeper/pruner=nop"])[1] == [
        "-m", "hydra/sweeper=codex_optuna", "hydra/sweeper/pruner=nop"]


def test_defaults_tpe_median_storage_in_the_sweep_dir() -> None:
    """TPE, MedianPruner, sqlite storage in sweeps/<name>, study named after the sweep, one trial at a time."""
    import optuna

    sweeper = _sweeper()
    assert sweeper._target_ == "hydra_plugins.codex_ml_sweeper.codex_ml_sweeper.CodexOptunaSweeper"
    assert (sweeper.storage, sweeper.study_name, sweeper.n_jobs, sweeper.direction) == (
        "sqlite:///sweeps/s/optuna.db", "s", 1, "minimize")
    assert isinstance(build_quietly(sweeper.sampler), optuna.samplers.TPESampler)  # as the sweeper builds it
    assert isinstance(instantiate(sweeper.pruner), optuna.pruners.MedianPruner)


@pytest.mark.parametrize("name", PRUNERS)
def test_every_shipped_pruner_builds(name: str) -> None:
    """Each configs/hydra/sweeper/pruner/*.yaml is a real Optuna pruner (threshold needs a bound)."""
    import optuna

    extra = ["hydra.sweeper.pruner.upper=4.0"] if name == "threshold" else []
    pruner = instantiate(_sweeper(f"hydra/sweeper/pruner={name}", *extra).pruner)
    assert isinstance(pruner, optuna.pruners.BasePruner)
