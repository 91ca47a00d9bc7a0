"""One declaration of the model's shape (codex_ml.models.config.ModelConfig) with one position default."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from codex_ml.models.config import ModelConfig
from codex_ml.models.transformer import GPTConfig
from codex_ml.pipeline.config import PipelineConfig
from codex_ml.training.config import TrainConfig
from codex_ml.training.demo import DemoConfig

SRC = Path(__file__).resolve().parents[2] / "src"


def test_every_job_reads_the_one_model_config() -> None:
    """train-model, the pipeline and the demo hold a ModelConfig; GPTConfig is it plus the vocabulary."""
    for holder in (TrainConfig(), PipelineConfig(), DemoConfig()):
        assert type(holder.model) is ModelConfig, type(holder).__name__
    shape = [f.name for f in dataclasses.fields(ModelConfig)]
    assert [f.name for f in dataclasses.fields(GPTConfig)] == [*shape, "vocab_size"]
    gpt = GPTConfig.from_model(PipelineConfig().model, vocab_size=7)
    assert {k: getattr(gpt, k) for k in shape} == dataclasses.asdict(PipelineConfig().model) and gpt.vocab_size == 7


def test_one_position_default_and_the_jobs_measured_with_learned_say_so() -> None:
    assert ModelConfig().position == GPTConfig(vocab_size=5).position == TrainConfig().model.position == "rope"
    # Their documented figures (docs/benchmarks.md) were measured with a learned position table.
    assert PipelineConfig().model.position == "learned" and DemoConfig().model.position == "learned"


def test_model_config_imports_no_torch() -> None:
    code = "import sys, codex_ml.models.config, codex_ml.training.config; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
