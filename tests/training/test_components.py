"""training/components.py: the optimizer every training job builds."""

from __future__ import annotations

import torch

from codex_ml.training.components import adamw_decaying_matrices


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))


def test_adamw_decays_matrices_only_and_is_fused_on_the_cpu() -> None:
    """Matrices decay, biases and gains do not; the fused kernel is used where torch has one for the CPU
    (>= 2.4): the default per-tensor loop cost ~2 ms of a ~40 ms benchmark step (issue 14)."""
    optimizer = adamw_decaying_matrices(_model(), 1e-3, 0.1, (0.9, 0.99))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    has_fused_cpu = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)
    assert all(bool(group["fused"]) is has_fused_cpu for group in optimizer.param_groups)


def test_fused_updates_match_the_default_adamw() -> None:
    """Ten updates with the fused optimizer land where the default AdamW lands (to float rounding)."""
    models = [_model(), _model()]
    fused = adamw_decaying_matrices(models[0], 1e-2, 0.1, (0.9, 0.99))
    plain = torch.optim.AdamW([{k: v for k, v in g.items() if k in ("params", "weight_decay")}
                               for g in adamw_decaying_matrices(models[1], 1e-2, 0.1, (0.9, 0.99)).param_groups],
                              lr=1e-2, betas=(0.9, 0.99))
    torch.manual_seed(1)
    x, y = torch.randn(32, 8), torch.randn(32, 4)
    for _ in range(10):
        for model, optimizer in zip(models, (fused, plain)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
