"""The training core every loop shares: one optimizer update, when periodic work is due, how
train and val metrics are logged.

Three jobs train a model: ``train-model`` (:mod:`codex_ml.training.trainer`), the demo
(:mod:`codex_ml.training.demo`) and the pipeline stages (:func:`codex_ml.pipeline.loop.optimise`).
Each keeps its own ``for step in ...`` (they differ in what a step computes: gradient accumulation
and DDP, one batch, a stage's loss), and all of them make each update with :class:`Stepper` and
decide evaluations with :func:`due`, so the rules below hold for every job:

- gradients are cleared at the start of an update (not after it: histograms logged after the
  update still see them);
- the learning rate comes from one schedule (:mod:`codex_ml.training.schedule`), either set on the
  optimizer here (``lr_at``) or read from a LambdaLR that is stepped here (``scheduler``);
- the global gradient norm is measured before clipping and logged; ``grad_clip <= 0`` clips at
  +inf, which measures without scaling;
- step ``s`` (1-based) is logged after the ``s``-th update; the untrained model's val metrics at
  step 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Stepper", "Update", "due", "log_split", "named", "update_metrics"]


@dataclass
class Update:
    """What one optimizer update did."""

    loss: float  # the mean training loss of the update's batch(es)
    grad_norm: torch.Tensor  # global norm before clipping; a 0-dim tensor (float() it to log)
    lr: float  # the learning rate this update used
    compute_end: float  # time.perf_counter() when forward/backward finished (for timing splits)
    applied: bool = True  # False when the guard refused the update (health action ``skip``)


class Stepper:
    """Makes optimizer updates: zero grads, set or read the lr, forward/backward, clip, step."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], grad_clip: float, *,
                 lr_at: Callable[[int], float] | None = None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 guard: Callable[[int, float, float], bool] | None = None) -> None:
        """Give exactly one of ``lr_at`` (step -> lr, set on every param group) or ``scheduler``.

        ``guard(step, loss, grad_norm)`` (optional) is asked before each optimizer step; when it
        returns False the update is not applied (its gradients are dropped; the schedule moves on).
        """
        if (lr_at is None) == (scheduler is None):
            raise ValueError("Stepper needs exactly one of lr_at or scheduler")
        self.optimizer, self.lr_at, self.scheduler = optimizer, lr_at, scheduler
        self.params = list(params)
        self.max_norm = grad_clip if grad_clip > 0 else math.inf
        self.guard = guard

    def update(self, step: int, forward_backward: Callable[[], torch.Tensor]) -> Update:
        """Run ``forward_backward`` (it calls ``backward`` and returns the detached mean loss) and
        apply the resulting gradients as update ``step``."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.lr_at is not None:
            lr = self.lr_at(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        else:
            lr = self.scheduler.get_last_lr()[0]  # type: ignore[union-attr]  # the rate this update uses
        loss = forward_backward()
        compute_end = time.perf_counter()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        # The guard decides on the values before they touch the weights.
        applied = self.guard is None or self.guard(step, loss.item(), float(grad_norm))
        if applied:
            self.optimizer.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        # .item() waits for the update to finish, so the caller's step time is real.
        return Update(loss.item(), grad_norm, lr, compute_end, applied)


def due(step: int, every: int, last: bool) -> bool:
    """True when periodic work (evaluation, histograms, checkpoints) runs after ``step``:
    every ``every`` steps and always after the last one."""
    return step % every == 0 or last


def update_metrics(update: Update) -> dict[str, float]:
    """``loss``, ``lr`` and ``grad_norm`` of an update, in the order every job logs them."""
    return {"loss": update.loss, "lr": update.lr, "grad_norm": float(update.grad_norm)}


def named(split: str, metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """``metrics`` keyed ``[prefix/]split/name`` (``train/loss``, ``m0/val/loss``)."""
    head = f"{prefix}/{split}" if prefix else split
    return {f"{head}/{k}": v for k, v in metrics.items()}


def log_split(run: Any, split: str, metrics: dict[str, float], step: int, prefix: str = "") -> None:
    """Log ``metrics`` as ``[prefix/]split/name`` at ``step`` in one record."""
    run.log_metrics(named(split, metrics, prefix), step)
