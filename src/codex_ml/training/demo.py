"""A short but real character-level language-model training job for the demo command.

It trains :class:`codex_ml.models.GPT` on the bundled Shakespeare sample on CPU
and streams everything a tracking backend can show: scalars every step, val
loss every ``eval_every`` steps, weight/grad histograms every ``histogram_every``
steps, and a generated text sample at the end.

Step numbering: step ``s`` (1..``steps``) is logged after the ``s``-th optimizer
update; the untrained model's val loss is logged at step 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from tqdm import tqdm

from codex_ml.data.char_tokenizer import CharTokenizer
from codex_ml.data.sample import load_sample_text
from codex_ml.models.config import ModelConfig
from codex_ml.models.transformer import GPT, GPTConfig
from codex_ml.training.batches import RandomWindows
from codex_ml.training.components import adamw_decaying_matrices
from codex_ml.training.core import Stepper, due, log_split, update_metrics
from codex_ml.training.observe import estimate_loss, generate_sample, log_histograms, val_metrics
from codex_ml.training.schedule import warmup_cosine_lr

__all__ = ["DemoConfig", "DemoRun", "run_demo_training"]


class DemoRun(Protocol):
    """What the demo needs from a tracking run (the tracking core's ``Run`` fits)."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Record run parameters once."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar metrics at ``step``."""

    def log_histogram(self, name: str, values: Any, step: int) -> None:
        """Record a distribution of ``values`` (a flat CPU tensor here) at ``step``."""

    def log_text(self, name: str, text: str, step: int) -> None:
        """Record a piece of text at ``step``."""


def _demo_model() -> ModelConfig:
    # Learned positions: the demo's documented figures (docs/benchmarks.md) were measured with them.
    return ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, position="learned")


@dataclass
class DemoConfig:
    """Hyper-parameters of the demo job; defaults take ~10 s on 2 CPU cores."""

    steps: int = 300
    batch_size: int = 16
    model: ModelConfig = field(default_factory=_demo_model)
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # <= 0 disables clipping (the grad norm is still logged)
    eval_every: int = 50
    eval_batches: int = 8
    histogram_every: int = 100
    sample_chars: int = 200
    seed: int = 0
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        """Reject values the loop cannot run with, naming the field."""
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "histogram_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DemoConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for problem in self.model.problems():
            raise ValueError(f"DemoConfig.model.{problem}")
        for name in ("warmup_steps", "sample_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"DemoConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"DemoConfig.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"DemoConfig.min_lr ({self.min_lr}) must be in [0, lr={self.lr}]")

    def lr_at(self, step: int) -> float:
        """The learning rate of 1-based ``step``: the shared schedule, counted from 1."""
        return warmup_cosine_lr(step, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                                total_steps=self.steps, first_step=1)


@dataclass
class _Data:
    """Tokenized train/val splits and the tokenizer that made them."""

    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64


def _prepare_data(text: str, config: DemoConfig) -> _Data:
    """Fit the tokenizer and split ``text`` deterministically into train (head) and val (tail)."""
    # Fit on the whole text so val never contains an unknown character.
    tokenizer = CharTokenizer.fit(text)
    n_train = int(len(text) * (1.0 - config.val_fraction))
    train, val = text[:n_train], text[n_train:]
    for split, part in (("train", train), ("val", val)):
        if len(part) <= config.model.block_size:
            raise ValueError(
                f"{split} split has {len(part)} characters; need more than block_size="
                f"{config.model.block_size} (use a longer text or a smaller block_size/val_fraction)"
            )
    train_ids = torch.tensor(tokenizer.encode(train), dtype=torch.long)
    val_ids = torch.tensor(tokenizer.encode(val), dtype=torch.long)
    return _Data(tokenizer, train_ids, val_ids)


def _log_eval(run: DemoRun, model: GPT, data: _Data, config: DemoConfig, step: int) -> float:
    """Evaluate on val, log ``val/loss`` and ``val/perplexity``; return the loss."""
    # A fresh fixed-seed sampler evaluates the same batches every time (see estimate_loss).
    val_loss = estimate_loss(model, data.val, config.batch_size, config.model.block_size, config.eval_batches,
                             config.seed + 1, torch.device("cpu"), contextlib.nullcontext)
    run.log_metrics(val_metrics(val_loss), step)
    return val_loss


def _initial_params(config: DemoConfig, model: GPT, data: _Data) -> dict[str, Any]:
    """The flattened config plus model and data facts, for ``run.log_params``."""
    # The shape's keys stay at the top level (n_layer, block_size, ...), where the demo always logged them.
    flat = {**dataclasses.asdict(config), **dataclasses.asdict(config.model)}
    del flat["model"]
    return {
        **dict(sorted(flat.items())),
        "model/num_parameters": model.num_parameters(),
        "data/vocab_size": data.tokenizer.vocab_size,
        "data/train_chars": len(data.train),
        "data/val_chars": len(data.val),
    }


def run_demo_training(
    run: DemoRun, config: DemoConfig, text: str | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a small char-level GPT on ``text`` (default: the bundled sample), logging to ``run``.

    Runs on CPU and is deterministic for a given ``config.seed`` (it seeds
    torch's global RNG). Returns ``initial_val_loss``, ``final_val_loss``,
    ``final_train_loss`` (loss of the last training batch), ``steps``,
    ``tokens_per_s`` (over training steps only) and the generated ``sample``.
    """
    # Longer than most functions on purpose: the whole loop reads top to bottom in one place.
    torch.manual_seed(config.seed)
    data = _prepare_data(load_sample_text() if text is None else text, config)
    model = GPT(GPTConfig.from_model(config.model, data.tokenizer.vocab_size))
    # beta2=0.99 rather than 0.999: tiny batches give noisy second moments (nanoGPT's char setup).
    optimizer = adamw_decaying_matrices(model, config.lr, config.weight_decay, (0.9, 0.99))
    stepper = Stepper(optimizer, model.parameters(), config.grad_clip, lr_at=config.lr_at)
    windows = RandomWindows(data.train, config.batch_size, config.model.block_size, config.seed)
    run.log_params(_initial_params(config, model, data))

    def forward_backward() -> torch.Tensor:
        _, loss = model(*windows.next())
        loss.backward()
        return loss.detach()

    initial_val_loss = val_loss = _log_eval(run, model, data, config, step=0)
    tokens_per_step = config.batch_size * config.model.block_size
    train_time, loss = 0.0, math.nan
    bar = tqdm(range(1, config.steps + 1), desc="demo training", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        update = stepper.update(step, forward_backward)
        loss = update.loss  # its .item() waited for the compute, so the step time below is real
        step_time = time.perf_counter() - t0
        train_time += step_time
        log_split(run, "train", {**update_metrics(update), "tokens_per_s": tokens_per_step / step_time,
                                 "step_time_s": step_time}, step)
        last = step == config.steps
        if due(step, config.eval_every, last):
            val_loss = _log_eval(run, model, data, config, step)
        if due(step, config.histogram_every, last):
            log_histograms(run, model, step)
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{val_loss:.3f}", refresh=False)
    bar.close()

    sample = generate_sample(model, data.tokenizer, config.sample_chars, config.seed, torch.device("cpu"))
    run.log_text("samples/generation", sample, config.steps)
    return {
        "initial_val_loss": initial_val_loss,
        "final_val_loss": val_loss,
        "final_train_loss": loss,
        "steps": config.steps,
        "tokens_per_s": tokens_per_step * config.steps / train_time,
        "sample": sample,
    }
