"""The training core (codex_ml.training.core): one optimizer update and the periodic-work rule
that the trainer, the demo and the pipeline stages all use."""

from __future__ import annotations

import math

import pytest
import torch

from codex_ml.training import core
from codex_ml.training.core import Stepper, due


def _model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3), torch.randn(8, 4), torch.randn(8, 3)


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    def run() -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(model(x), y) * 100  # large gradients, so clipping bites
        loss.backward()
        return loss.detach()

    return run


def _manual_update(grad_clip: float, lr: float) -> tuple[list[torch.Tensor], float]:
    """What one SGD update must do, written out by hand: the reference for the Stepper."""
    model, x, y = _model_and_batch()
    _forward_backward(model, x, y)()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    scale = min(1.0, grad_clip / (float(norm) + 1e-6)) if grad_clip > 0 else 1.0
    with torch.no_grad():
        return [p - lr * scale * p.grad for p in model.parameters()], float(norm)


@pytest.mark.parametrize("grad_clip", [0.5, 0.0])
def test_update_sets_the_lr_measures_the_norm_before_clipping_and_clips(grad_clip: float) -> None:
    model, x, y = _model_and_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=123.0)
    stepper = Stepper(optimizer, model.parameters(), grad_clip, lr_at=lambda step: 0.01 * step)
    update = stepper.update(3, _forward_backward(model, x, y))
    expected, norm = _manual_update(grad_clip, 0.03)
    assert update.lr == 0.03 and optimizer.param_groups[0]["lr"] == 0.03
    assert float(update.grad_norm) == pytest.approx(norm, rel=1e-5) and norm > 0.5  # measured before clipping
    for after, want in zip(model.parameters(), expected):
        torch.testing.assert_close(after.detach(), want)  # grad_clip <= 0: measured, not scaled
    with torch.no_grad():
        assert update.loss == pytest.approx(float(torch.nn.functional.mse_loss(_model_and_batch()[0](x), y) * 100))


def test_update_with_a_scheduler_uses_its_current_rate_then_steps_it() -> None:
    model, x, y = _model_and_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    stepper = Stepper(optimizer, model.parameters(), 1.0, scheduler=scheduler)
    rates = [stepper.update(step, _forward_backward(model, x, y)).lr for step in (1, 2, 3)]
    assert rates == [1.0, 0.5, 0.25] and scheduler.get_last_lr() == [0.125]


def test_update_clears_the_previous_gradients_first() -> None:
    model, x, y = _model_and_batch()
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.0), model.parameters(), 0.0, lr_at=lambda step: 0.0)
    first = stepper.update(1, _forward_backward(model, x, y))
    second = stepper.update(2, _forward_backward(model, x, y))  # lr 0: the same weights, the same gradients
    assert float(second.grad_norm) == pytest.approx(float(first.grad_norm))


def test_a_stepper_needs_exactly_one_source_of_the_lr() -> None:
    model, _, _ = _model_and_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Stepper(optimizer, model.parameters(), 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Stepper(optimizer, model.parameters(), 1.0, lr_at=lambda s: 1.0,
                scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))


def test_periodic_work_is_due_every_n_steps_and_after_the_last() -> None:
    assert [s for s in range(1, 13) if due(s, 5, s == 12)] == [5, 10, 12]
    assert core.named("val", {"loss": 1.0}, "m0") == {"m0/val/loss": 1.0}
    assert core.update_metrics(core.Update(2.0, torch.tensor(3.0), 0.1, math.nan)) == {
        "loss": 2.0, "lr": 0.1, "grad_norm": 3.0}


@pytest.mark.parametrize("module", ["codex_ml.training.trainer", "codex_ml.training.demo", "codex_ml.pipeline.loop"])
def test_every_training_loop_updates_through_the_core(module: str) -> None:
    """One core: no loop clips or steps the optimizer itself (a fourth copy of the rules would)."""
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(module))
    assert "Stepper(" in source
    assert "clip_grad_norm_" not in source and "optimizer.step()" not in source
