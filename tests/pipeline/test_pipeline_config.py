"""Pipeline config: shipped files compose, problems are listed together, overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_ml.pipeline.config import PipelineConfig, PipelineConfigError, apply_overrides, load_config_file

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "pipeline").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_loads(path: Path) -> None:
    config = PipelineConfig.from_mapping(load_config_file(path), source=str(path))
    assert config.preference.method in ("rloo", "dpo")


def test_default_yaml_matches_the_dataclass_defaults() -> None:
    loaded = PipelineConfig.from_mapping(load_config_file(REPO / "configs" / "pipeline" / "default.yaml"))
    assert loaded.resolved() == PipelineConfig().resolved()


@pytest.mark.parametrize("name", [p.stem for p in SHIPPED])
def test_shipped_configs_compose_through_hydra(name: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"pipeline={name}", "++pipeline.seed=3"])
    from omegaconf import OmegaConf

    config = PipelineConfig.from_mapping(OmegaConf.to_container(cfg.pipeline, resolve=True))
    assert config.seed == 3


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(PipelineConfigError) as info:
        PipelineConfig.from_mapping({"sedd": 1, "pretrain": {"steps": "many", "lrr": 1}, "model": {"n_layer": 1.5}})
    message = str(info.value)
    assert "4 problem(s)" in message
    for part in ("sedd: unknown key", "pretrain.steps: expected int", "pretrain.lrr: unknown key", "model.n_layer: expected int"):
        assert part in message


def test_impossible_values_are_reported() -> None:
    with pytest.raises(PipelineConfigError, match="preference.method: must be one of"):
        PipelineConfig.from_mapping({"preference": {"method": "ppo2"}})


def test_overrides_parse_yaml_values_and_nest() -> None:
    data = apply_overrides({"sft": {"lr": 1.0}}, ["sft.steps=5", "pipeline.seed=2", "preference.method=dpo", "force=true"])
    config = PipelineConfig.from_mapping(data)
    assert (config.sft.steps, config.sft.lr, config.seed, config.preference.method, config.force) == (5, 1.0, 2, "dpo", True)
    with pytest.raises(PipelineConfigError, match="expected key=value"):
        apply_overrides({}, ["sft.steps"])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="nope.yaml"):
        load_config_file(tmp_path / "nope.yaml")


def test_exponent_without_a_dot_is_a_float() -> None:
    config = PipelineConfig.from_mapping(apply_overrides({}, ["sft.lr=2e-4", "reward.lr=1e-3"]))
    assert (config.sft.lr, config.reward.lr) == (2e-4, 1e-3)


def test_negative_reward_and_dpo_weights_are_reported_together() -> None:
    with pytest.raises(PipelineConfigError) as info:
        PipelineConfig.from_mapping({"reward": {"logprob_weight": -1.0}, "preference": {"dpo_nll": -0.5}})
    assert "reward.logprob_weight: must be >= 0" in str(info.value) and "preference.dpo_nll: must be >= 0" in str(info.value)
