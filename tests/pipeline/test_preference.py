"""DPO's chosen-answer cross entropy: the reason DPO no longer lowers the right answers' probability."""

from __future__ import annotations

import copy

import torch

from codex_ml.data.tokenizers import train_tokenizer
from codex_ml.models.config import ModelConfig
from codex_ml.pipeline.inputs import Preference
from codex_ml.pipeline.loop import PromptCodec, pair_batch
from codex_ml.pipeline.modeling import build_gpt, sequence_logprobs
from codex_ml.pipeline.preference import _dpo_step

PAIRS = [Preference(f"{a}+{b}=", str(a + b), str(a + b + 1)) for a in range(3) for b in range(3)]


def _chosen_logp_after_steps(nll: float) -> tuple[float, float]:
    """(before, after) mean log-prob of the chosen answers over 20 DPO steps with weight ``nll``."""
    tokenizer = train_tokenizer("char", [p.prompt + p.chosen + p.rejected for p in PAIRS], 256)
    codec = PromptCodec(tokenizer, 16)
    torch.manual_seed(0)
    policy = build_gpt(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), tokenizer.vocab_size)
    reference = copy.deepcopy(policy).eval()
    ids, _, mask = pair_batch(codec, [(p.prompt, p.chosen) for p in PAIRS])
    before = sequence_logprobs(policy, ids, mask).mean().item()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        loss, metrics = _dpo_step(policy, reference, codec, PAIRS, beta=0.1, nll=nll)
        loss.backward()
        optimizer.step()
    assert {"pair_accuracy", "chosen_logp", "rejected_logp"} <= set(metrics)
    return before, sequence_logprobs(policy, ids, mask).mean().item()


def test_chosen_cross_entropy_raises_the_right_answers_log_prob() -> None:
    before, with_nll = _chosen_logp_after_steps(nll=1.0)
    _, plain = _chosen_logp_after_steps(nll=0.0)
    assert with_nll > before  # the right answers become more likely
    assert with_nll > plain + 0.5  # ... by far more than plain DPO leaves them
