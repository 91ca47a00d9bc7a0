"""The learning-rate schedule used by the trainer (warmup, cosine, floor) and its resumability."""

from __future__ import annotations

import math
import pickle

import torch

from codex_ml.training.schedule import WarmupCosine, warmup_cosine_lr


def test_warmup_then_cosine_to_the_floor() -> None:
    """Linear ramp over warmup, lr at the end of warmup, min_lr at total_steps and after."""
    kw = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10, "total_steps": 110}
    assert math.isclose(warmup_cosine_lr(0, **kw), 1e-4)
    assert math.isclose(warmup_cosine_lr(9, **kw), 1e-3)
    assert math.isclose(warmup_cosine_lr(60, **kw), 5.5e-4)  # half way down the cosine
    assert math.isclose(warmup_cosine_lr(110, **kw), 1e-4) and math.isclose(warmup_cosine_lr(500, **kw), 1e-4)
    values = [warmup_cosine_lr(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lambda_lr_state_survives_a_checkpoint() -> None:
    """The multiplier pickles, and a restored LambdaLR continues at the same rate."""
    def fresh() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(1e-3, 1e-4, 5, 50))

    opt, sched = fresh()
    for _ in range(17):
        opt.step()
        sched.step()
    state = pickle.loads(pickle.dumps(sched.state_dict()))
    opt2, sched2 = fresh()
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert math.isclose(sched.get_last_lr()[0], warmup_cosine_lr(17, lr=1e-3, min_lr=1e-4, warmup_steps=5, total_steps=50))
