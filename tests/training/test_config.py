"""The config schema: defaults, files, overrides, and one error that lists every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_ml.tracking.config import TrackingConfig
from codex_ml.training.config import ConfigError, TrainConfig, load_config, parse_overrides, validate_config


def test_defaults_are_the_issue_setup_on_bundled_data() -> None:
    """No file, no overrides: 4 layers, 4 heads, 128 dims, context 64, batch 12, bundled text."""
    config = load_config()
    assert (config.model.n_layer, config.model.n_head, config.model.n_embd, config.model.block_size) == (4, 4, 128, 64)
    assert config.training.batch_size == 12 and config.data.path is None
    assert config.tracking_config() == TrackingConfig()


def test_file_then_overrides_win(tmp_path: Path) -> None:
    """Overrides beat the file; the file beats the defaults; YAML floats like 1e-3 parse as floats."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  n_layer: 2\ntraining:\n  lr: 1e-3\n  max_steps: 10\n")
    config = load_config(path, ["training.max_steps=20", "training.min_lr=5e-5", "+tracking.enable_tensorboard=true"])
    assert config.model.n_layer == 2 and config.model.n_embd == 128
    assert config.training.max_steps == 20 and config.training.lr == 1e-3 and config.training.min_lr == 5e-5
    assert config.tracking_config().enable_tensorboard is True


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Unknown sections and keys, wrong types and bad ranges arrive in one ConfigError, each by key."""
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  n_layer: two\n  n_embd: 30\ntraining:\n  max_stepz: 5\n  lr: true\nextra: 1\n"
                    "tracking:\n  enable_mlflow: yes-please\n  colour: red\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["data.tokenizer=word", "training.warmup_steps=-1"])
    message = str(caught.value)
    assert str(path) in message and len(caught.value.problems) == 9, message
    for needle in ("model.n_layer: expected int, got str 'two'", "training.max_stepz: unknown key",
                   "training.lr: expected float, got bool", "extra: unknown section",
                   "tracking.enable_mlflow: expected bool", "tracking.colour: unknown key",
                   "data.tokenizer: unknown tokenizers plugin 'word'; registered tokenizers: bpe, char", "training.warmup_steps must be >= 0",
                   "model.n_embd (30) must be divisible by n_head (4)"):
        assert needle in message, needle


def test_range_checks_and_divisibility() -> None:
    """Values of the right type but impossible for the model are reported by key."""
    with pytest.raises(ConfigError) as caught:
        validate_config({"model": {"n_embd": 30, "n_head": 4}, "training": {"lr": 1e-4, "min_lr": 1e-3},
                         "data": {"val_fraction": 1.5}, "system_metrics": {"interval": -1}})
    text = str(caught.value)
    for needle in ("model.n_embd (30) must be divisible", "training.min_lr", "data.val_fraction", "system_metrics.interval"):
        assert needle in text


def test_rope_with_an_odd_head_size_is_a_config_problem() -> None:
    """Caught with the other problems, before any data is read, not as a model error mid-run."""
    with pytest.raises(ConfigError, match="model.position rope needs an even head size, got n_embd / n_head = 3"):
        validate_config({"model": {"n_embd": 12, "n_head": 4}})
    assert validate_config({"model": {"n_embd": 12, "n_head": 4, "position": "learned"}}).model.n_embd == 12


def test_bad_overrides_and_files_are_clear(tmp_path: Path) -> None:
    """An override without '=' and a missing or malformed file each name the culprit."""
    with pytest.raises(ConfigError, match="training.max_steps"):
        parse_overrides(["training.max_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_deletion_override_restores_the_default(tmp_path: Path) -> None:
    """``~training.max_steps`` drops the file's value, so the default applies."""
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  max_steps: 10\n")
    assert load_config(path, ["~training.max_steps"]).training.max_steps == 2000


def test_effective_tracking_round_trips_through_the_saved_config() -> None:
    """with_tracking() stores the effective sinks; loading that dict back gives the same settings."""
    tracking = TrackingConfig(run_name="x", enable_mlflow=True, mlflow_experiment="e", system_metrics="AUTO",
                              system_metrics_interval=2.0)
    saved = TrainConfig().with_tracking(tracking).to_dict()
    assert "run_name" not in saved["tracking"]
    assert saved["system_metrics"] == {"path": "AUTO", "interval": 2.0, "collectors": None}
    again = validate_config(saved).tracking_config()
    assert again.enable_mlflow and again.mlflow_experiment == "e" and again.system_metrics == "AUTO"
    assert again.run_name is None
