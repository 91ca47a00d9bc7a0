"""Tests for codex_ml.training.demo (the demo char-level LM job)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from codex_ml.data.sample import load_sample_text
from codex_ml.models.config import ModelConfig
from codex_ml.training.demo import DemoConfig, run_demo_training
from codex_ml.training.schedule import warmup_cosine_lr

SRC = Path(__file__).resolve().parents[2] / "src"
TRAIN_KEYS = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/step_time_s"}
TINY = DemoConfig(
    steps=40, batch_size=8, model=ModelConfig(block_size=32, n_layer=1, n_head=2, n_embd=32, position="learned"), warmup_steps=5,
    eval_every=10, eval_batches=2, histogram_every=15, sample_chars=30,
)


@dataclass
class RecordingRun:
    """Stands in for the tracking Run: stores exactly what each logging method receives."""

    params: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    histograms: list[tuple[str, Any, int]] = field(default_factory=list)
    texts: list[tuple[str, str, int]] = field(default_factory=list)

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.append(dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.setdefault(step, {}).update(metrics)

    def log_histogram(self, name: str, values: Any, step: int) -> None:
        self.histograms.append((name, values, step))

    def log_text(self, name: str, text: str, step: int) -> None:
        self.texts.append((name, text, step))


def _train(config: DemoConfig = TINY) -> tuple[RecordingRun, dict[str, Any]]:
    run = RecordingRun()
    # A slice of the corpus keeps tokenizing cheap; the split still has plenty of windows.
    result = run_demo_training(run, config, text=load_sample_text()[:30_000], progress=False)
    return run, result


@pytest.fixture(scope="module")
def trained() -> tuple[RecordingRun, dict[str, Any]]:
    return _train()


def test_val_loss_drops_from_uniform(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, result = trained
    vocab = run.params[0]["data/vocab_size"]
    assert abs(result["initial_val_loss"] - math.log(vocab)) < 0.3
    assert result["final_val_loss"] < result["initial_val_loss"] - 0.5
    assert result["steps"] == TINY.steps
    assert result["tokens_per_s"] > 0
    assert math.isfinite(result["final_train_loss"])


def test_every_step_logs_train_metrics(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, _ = trained
    for step in range(1, TINY.steps + 1):
        assert TRAIN_KEYS <= run.metrics[step].keys(), step
        assert all(isinstance(v, float) and math.isfinite(v) for v in run.metrics[step].values())
    assert run.metrics[TINY.warmup_steps]["train/lr"] == pytest.approx(TINY.lr)


def test_val_metrics_at_eval_steps_and_last_step(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, result = trained
    val_steps = [s for s, m in sorted(run.metrics.items()) if "val/loss" in m]
    assert val_steps == [0, 10, 20, 30, 40]  # step 0 = the untrained model
    last = run.metrics[TINY.steps]
    assert last["val/loss"] == result["final_val_loss"]
    assert last["val/perplexity"] == pytest.approx(math.exp(last["val/loss"]))


def test_histograms_for_matrices_at_the_right_steps(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, _ = trained
    steps = sorted({step for _, _, step in run.histograms})
    assert steps == [15, 30, 40]  # every histogram_every steps, plus the last step
    names = {name for name, _, step in run.histograms if step == 40}
    # 1 layer: wte, wpe + 4 matrices in the block (c_attn, attn c_proj, c_fc, mlp c_proj), weights and grads.
    assert len(names) == 2 * 6
    assert {"weights/wte.weight", "grads/wte.weight", "weights/blocks.0.attn.c_attn.weight"} <= names
    vocab = run.params[0]["data/vocab_size"]
    sizes = {"wte.weight": vocab * 32, "wpe.weight": 32 * 32, "blocks.0.attn.c_attn.weight": 96 * 32}
    for name, values, _ in run.histograms:
        assert isinstance(values, torch.Tensor) and values.dim() == 1 and values.device.type == "cpu"
        param = name.split("/", 1)[1]
        if param in sizes:
            assert values.numel() == sizes[param], name


def test_params_and_generated_text_are_logged(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, result = trained
    assert len(run.params) == 1
    params = run.params[0]
    flat = {k: v for k, v in asdict(TINY).items() if k != "model"}
    # The model's shape is logged at the top level (n_layer, block_size, ...), as before it was a ModelConfig.
    assert flat.items() <= params.items() and asdict(TINY.model).items() <= params.items()
    assert params["model/num_parameters"] > 0
    assert params["data/train_chars"] + params["data/val_chars"] == 30_000
    assert run.texts == [("samples/generation", result["sample"], TINY.steps)]
    assert len(result["sample"]) == TINY.sample_chars


def test_same_seed_gives_identical_results(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    _, first = trained
    _, second = _train()
    for key in ("initial_val_loss", "final_val_loss", "final_train_loss", "sample"):
        assert first[key] == second[key], key


def _old_demo_cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The demo's own schedule before it used the shared one (its documented figures were measured with it)."""
    if warmup_steps > 0 and step <= warmup_steps:
        return lr * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return min_lr + coeff * (lr - min_lr)


def test_demo_lr_is_the_shared_schedule_counted_from_one_and_unchanged(trained: tuple[RecordingRun, dict[str, Any]]) -> None:
    run, _ = trained
    kw = {"lr": TINY.lr, "min_lr": TINY.min_lr, "warmup_steps": TINY.warmup_steps, "total_steps": TINY.steps}
    for step in range(1, TINY.steps + 1):
        # Exact equality: the demo's logged values must not move by a rounding error.
        assert run.metrics[step]["train/lr"] == warmup_cosine_lr(step, first_step=1, **kw) == _old_demo_cosine_lr(step, **kw)
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert [DemoConfig(steps=110, lr=1.0, min_lr=0.1, warmup_steps=10).lr_at(s) for s in (5, 10, 60, 110)] == [
        pytest.approx(v) for v in (0.5, 1.0, 0.55, 0.1)]


def test_demo_model_is_the_shared_model_config_with_learned_positions() -> None:
    """The demo's figures were measured with learned positions; it says so, the default stays rope."""
    assert DemoConfig().model == ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, position="learned")
    assert ModelConfig().position == "rope"
    with pytest.raises(ValueError, match="DemoConfig.model.n_embd"):
        DemoConfig(model=ModelConfig(n_embd=30, n_head=4))


def test_config_and_text_validation() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        DemoConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="block_size"):
        run_demo_training(RecordingRun(), TINY, text="short text", progress=False)


def test_training_package_import_does_not_import_torch() -> None:
    code = "import sys, codex_ml.training; assert 'torch' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
