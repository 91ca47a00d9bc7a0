"""Fixtures for the pipeline tests: small generated data and the tiny config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codex_ml.pipeline.config import PipelineConfig, apply_overrides, load_config_file
from codex_ml.pipeline.example_data import ExampleSpec, write_example_data

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "pipeline" / "tiny.yaml"
SMALL = ExampleSpec(corpus_docs=40, demos=60, prefs=80, seed=7)


@pytest.fixture(autouse=True)
def _clean_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's environment (an MLflow server, W&B online) leaks in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def small_data(tmp_path: Path) -> dict[str, Path]:
    """corpus/demos/prefs JSONL files made by the bundled generator, at test size."""
    return write_example_data(tmp_path / "data", SMALL)


def tiny_config(data: dict[str, Path], output_dir: Path, *overrides: str) -> PipelineConfig:
    """The shipped tiny config pointed at ``data`` and ``output_dir``, plus overrides."""
    values = load_config_file(TINY_YAML)
    values.update({name: str(path) for name, path in data.items()}, output_dir=str(output_dir))
    return PipelineConfig.from_mapping(apply_overrides(values, list(overrides)))


@pytest.fixture
def make_config(small_data: dict[str, Path], tmp_path: Path):
    """``make_config(name, *overrides)``: a tiny config writing to ``tmp_path/name``."""

    def make(name: str = "out", *overrides: str) -> Any:
        return tiny_config(small_data, tmp_path / name, *overrides)

    return make
