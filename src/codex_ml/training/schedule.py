"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

Expressed as a multiplier for ``torch.optim.lr_scheduler.LambdaLR`` so the scheduler's own
``state_dict`` (its step counter) is what a checkpoint saves and a resume restores.
"""

from __future__ import annotations

import math

__all__ = ["WarmupCosine", "warmup_cosine_lr"]


def warmup_cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int,
                     first_step: int = 0) -> float:
    """The learning rate for optimizer update ``step``; updates are numbered from ``first_step``.

    Warmup ramps linearly up to ``lr`` over the first ``warmup_steps`` updates; afterwards a half
    cosine brings it to ``min_lr`` at ``step == total_steps`` and holds it there. The cosine is
    measured from ``step == warmup_steps`` whatever ``first_step`` is, so:

    - ``first_step=0`` (the trainer's LambdaLR, the pipeline's ``step - 1``): the peak holds for two
      updates and the last update (``total_steps - 1``) stays just above ``min_lr``;
    - ``first_step=1`` (the demo's 1-based steps): the decay starts right after the peak and the
      last update (``total_steps``) runs at ``min_lr``. Both are kept because the documented
      figures of each job were measured with them (docs/benchmarks.md).
    """
    if step < warmup_steps + first_step:
        return lr * (step - first_step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


class WarmupCosine:
    """A picklable LambdaLR multiplier (a lambda would not survive ``torch.save`` of the state)."""

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> None:
        self.lr, self.min_lr, self.warmup_steps, self.total_steps = lr, min_lr, warmup_steps, total_steps

    def __call__(self, step: int) -> float:
        """Multiplier of the base lr for 0-based update ``step``."""
        if self.lr == 0:
            return 0.0
        return warmup_cosine_lr(step, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                                total_steps=self.total_steps) / self.lr
