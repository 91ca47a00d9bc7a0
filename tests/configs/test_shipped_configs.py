"""Every shipped config composes (through Hydra and through ``train-model --config``) and validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from codex_ml.training.config import NON_SCHEMA_KEYS, load_config, validate_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAINING = sorted(p.stem for p in (CONFIGS / "training").glob("*.yaml"))
PIPELINES = sorted(p.stem for p in (CONFIGS / "pipeline").glob("*.yaml")) if (CONFIGS / "pipeline").is_dir() else []


def _compose(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=True)


def test_there_are_training_configs() -> None:
    """The shipped set includes base (the default) and a tiny smoke config."""
    assert {"base", "tiny"} <= set(TRAINING)


@pytest.mark.parametrize("name", TRAINING)
def test_training_config_composes_both_ways(name: str) -> None:
    """Hydra composition and the --config file loader give the same validated config."""
    composed = _compose(f"training@_global_={name}")
    via_hydra = validate_config({k: v for k, v in composed.items() if k not in NON_SCHEMA_KEYS}, name)
    via_file = load_config(CONFIGS / "training" / f"{name}.yaml")
    assert via_hydra == via_file


@pytest.mark.parametrize("name", TRAINING)
def test_training_config_opens_with_its_command(name: str) -> None:
    """Each training config's first line is a comment giving the command that runs it."""
    first = (CONFIGS / "training" / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("# Run: python -m codex_ml.cli train-model --config configs/training/" + name + ".yaml")


def test_primary_config_defaults_to_base_on_bundled_data() -> None:
    """`python -m codex_ml.cli.main` with no overrides trains base.yaml on the bundled sample text."""
    composed = _compose()
    assert composed.get("pipeline") is None and composed["data"]["path"] is None
    assert validate_config({k: v for k, v in composed.items() if k not in NON_SCHEMA_KEYS}) == load_config(
        CONFIGS / "training" / "base.yaml")
    assert (CONFIGS / "config.yaml").read_text().startswith("# Run: python -m codex_ml.cli.main")


@pytest.mark.parametrize("name", PIPELINES or ["(none shipped)"])
def test_pipeline_configs_compose(name: str) -> None:
    """Each configs/pipeline/*.yaml composes as the `pipeline` group with the training tree beside it."""
    if not PIPELINES:
        assert not (CONFIGS / "pipeline").is_dir() or not list((CONFIGS / "pipeline").glob("*.yaml"))
        return
    composed = _compose(f"pipeline={name}")
    assert composed["pipeline"] is not None
    validate_config({k: v for k, v in composed.items() if k not in NON_SCHEMA_KEYS})
