"""Tests for codex_ml.models.transformer (the small GPT)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codex_ml.models.transformer import GPT, POSITIONS, GPTConfig, apply_rope, rope_tables

SRC = Path(__file__).resolve().parents[2] / "src"
VOCAB = 61


def _model(**overrides: object) -> GPT:
    """A tiny seeded model so tests are fast and repeatable."""
    torch.manual_seed(0)
    cfg = {"vocab_size": VOCAB, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32}
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def test_forward_shapes_without_and_with_targets() -> None:
    model = _model()
    idx = torch.randint(VOCAB, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 10, VOCAB)
    assert loss is None
    _, loss = model(idx, idx)
    assert loss is not None and loss.dim() == 0


@pytest.mark.parametrize("position", POSITIONS)
def test_changing_a_future_token_leaves_earlier_logits_unchanged(position: str) -> None:
    model = _model(position=position)
    idx = torch.randint(VOCAB, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % VOCAB
    logits_a, _ = model(idx)
    logits_b, _ = model(changed)
    torch.testing.assert_close(logits_a[:, :7], logits_b[:, :7])
    assert not torch.allclose(logits_a[:, 7:], logits_b[:, 7:])


def test_lm_head_is_tied_to_token_embedding() -> None:
    model = _model()
    assert model.lm_head.weight is model.wte.weight
    # The tied matrix is counted once.
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))
    untied = sum(p.numel() for p in model.state_dict().values())
    assert model.num_parameters() == untied - model.wte.weight.numel()


def test_initial_loss_is_close_to_uniform_prediction() -> None:
    model = _model()
    idx = torch.randint(VOCAB, (4, 16))
    _, loss = model(idx, torch.randint(VOCAB, (4, 16)))
    assert loss is not None
    assert abs(loss.item() - math.log(VOCAB)) < 0.2


@pytest.mark.parametrize("position", POSITIONS)
def test_generate_appends_tokens_and_crops_context(position: str) -> None:
    model = _model(block_size=8, position=position)
    start = torch.zeros((2, 3), dtype=torch.long)
    out = model.generate(start, max_new_tokens=12)  # ends past block_size: context must be cropped
    assert out.shape == (2, 15)
    assert torch.equal(out[:, :3], start)
    assert int(out.max()) < VOCAB


def test_generate_is_reproducible_with_a_generator_and_greedy_with_top_k_1() -> None:
    model = _model()
    start = torch.zeros((1, 1), dtype=torch.long)
    a = model.generate(start, 10, generator=torch.Generator().manual_seed(3))
    b = model.generate(start, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    greedy = model.generate(start, 1, top_k=1)
    assert greedy[0, 1] == model(start)[0][0, -1].argmax()


def test_forward_rejects_sequences_longer_than_block_size() -> None:
    with pytest.raises(ValueError, match="block_size"):
        _model(block_size=4)(torch.zeros((1, 5), dtype=torch.long))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"block_size": -1}, "block_size"),
        ({"n_layer": 0}, "n_layer"),
        ({"n_head": 0}, "n_head"),
        ({"dropout": 1.0}, "dropout"),
        ({"position": "alibi"}, "position"),
        ({"position": "rope", "n_embd": 12, "n_head": 4}, "even head size"),
    ],
)
def test_config_validation_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{"vocab_size": VOCAB, **overrides})  # type: ignore[arg-type]


def test_rope_scores_depend_only_on_the_distance_between_positions() -> None:
    cos, sin = rope_tables(block_size=32, head_size=8)
    torch.manual_seed(1)
    q, k = torch.randn(8), torch.randn(8)

    def score(i: int, j: int) -> float:
        # The same query at position i against the same key at position j.
        qi = apply_rope(q.view(1, 1, 1, 8), cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k.view(1, 1, 1, 8), cos[j : j + 1], sin[j : j + 1])
        return float((qi * kj).sum())

    assert score(5, 2) == pytest.approx(score(20, 17), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    # Rotation keeps lengths: position changes direction, never scale.
    rotated = apply_rope(q.view(1, 1, 1, 8), cos[9:10], sin[9:10])
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_rope_is_the_pairwise_rotation_bit_for_bit_forward_and_backward() -> None:
    """apply_rope (written with roll for speed) gives exactly the rotated halves
    cat(x1*cos - x2*sin, x1*sin + x2*cos), and exactly their gradient, on a strided q view."""
    cos, sin = rope_tables(block_size=16, head_size=8)
    torch.manual_seed(2)
    qkv = torch.randn(3, 16, 3 * 16, requires_grad=True)  # (B, T, 3C) as c_attn returns, C = 2 heads x 8
    grad = torch.randn(3, 2, 16, 8)

    def rotated(rope: object) -> tuple[torch.Tensor, torch.Tensor]:
        qkv.grad = None
        q = qkv[..., :16].view(3, 16, 2, 8).transpose(1, 2)  # (B, H, T, hs), not contiguous
        out = rope(q)  # type: ignore[operator]
        out.backward(grad)
        return out.detach(), qkv.grad.clone()  # type: ignore[union-attr]

    def by_halves(q: torch.Tensor) -> torch.Tensor:
        q1, q2 = q[..., :4], q[..., 4:]
        return torch.cat((q1 * cos - q2 * sin, q1 * sin + q2 * cos), dim=-1)

    fast, slow = rotated(lambda q: apply_rope(q, cos, sin)), rotated(by_halves)
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])


def test_rope_model_has_no_position_table_and_saves_no_rotation_buffers() -> None:
    model = _model(position="rope")
    assert model.wpe is None
    assert not any("rope" in name or name.startswith("wpe") for name in model.state_dict())
    learned = _model(position="learned")
    assert learned.num_parameters() - model.num_parameters() == learned.wpe.weight.numel()
    # A rope model's checkpoint loads into a freshly built rope model.
    fresh = GPT(model.config)
    fresh.load_state_dict(model.state_dict())
    idx = torch.randint(VOCAB, (1, 16))
    torch.testing.assert_close(fresh.eval()(idx)[0], model(idx)[0])


def test_models_package_import_does_not_import_torch() -> None:
    code = (
        "import sys, codex_ml.models as m; assert 'torch' not in sys.modules; "
        "m.GPTConfig; assert 'torch' in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
