"""What the trainer measures besides the training loss: validation, histograms, samples."""

from __future__ import annotations

import math
from typing import Any

import torch

from codex_ml.training.batches import RandomWindows

__all__ = ["NONFINITE_SAMPLE", "estimate_loss", "generate_sample", "log_histograms"]

#: The text logged as the sample of a model with NaN/Inf weights.
NONFINITE_SAMPLE = "[no sample: the model's weights are not finite]"


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: torch.Tensor, batch_size: int, block_size: int,
                  batches: int, seed: int, device: torch.device, autocast: Any) -> float:
    """Mean loss over ``batches`` fixed random batches of ``data``, in eval mode."""
    # A fresh fixed-seed sampler evaluates the same windows every time, so the val curve
    # shows the model changing (not the batches), and the training stream is untouched.
    windows = RandomWindows(data, batch_size, block_size, seed)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        x, y = windows.next()
        with autocast():
            total += model(x.to(device), y.to(device))[1].float().item()
    model.train(was_training)
    return total / batches


def val_metrics(loss: float) -> dict[str, float]:
    """``val/loss`` and ``val/perplexity`` (capped so a diverged run logs a finite number)."""
    return {"val/loss": loss, "val/perplexity": math.exp(min(loss, 80.0))}


def log_histograms(run: Any, model: torch.nn.Module, step: int) -> None:
    """Log ``weights/<name>`` and ``grads/<name>`` for every matrix parameter."""
    for name, param in model.named_parameters():
        if param.dim() < 2:
            continue
        run.log_histogram(f"weights/{name}", param.detach().flatten(), step)
        if param.grad is not None:
            run.log_histogram(f"grads/{name}", param.grad.detach().flatten(), step)


@torch.no_grad()
def generate_sample(model: Any, tokenizer: Any, tokens: int, seed: int, device: torch.device) -> str:
    """Decode ``tokens`` sampled tokens, started from a newline (or id 0), with a fixed seed.

    A model whose weights are not finite (a NaN step, e.g. ``training.fault=nan@N``, with no health
    action to drop it) has no distribution to sample from; the sample then says so instead of
    ``torch.multinomial`` ending the run.
    """
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return NONFINITE_SAMPLE
    try:
        first = tokenizer.encode("\n")[:1] or [0]
    except Exception:  # a vocabulary without a newline: any start token will do
        first = [0]
    start = torch.tensor([first], dtype=torch.long, device=device)  # (1, 1)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(start, tokens, generator=generator)  # (1, 1 + tokens)
    model.train(was_training)
    return tokenizer.decode(out[0, 1:].tolist())
