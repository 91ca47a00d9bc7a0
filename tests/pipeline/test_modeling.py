"""The reward model wrapper and the log-prob helpers agree with the GPT they wrap."""

from __future__ import annotations

import pytest
import torch

from codex_ml.models.config import POSITIONS, ModelConfig
from codex_ml.pipeline.modeling import RewardModel, build_gpt, hidden_states, pad_batch, sequence_logprobs


def _gpt(position: str = "learned"):
    torch.manual_seed(0)
    shape = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, position=position)  # type: ignore[arg-type]
    return build_gpt(shape, vocab_size=11).eval()


@pytest.mark.parametrize("position", POSITIONS)
def test_hidden_states_are_what_the_lm_head_reads(position: str) -> None:
    """Both position encodings: a pipeline may set model.position=rope (the shared default)."""
    gpt = _gpt(position)
    ids = torch.randint(11, (2, 7))
    logits, _ = gpt(ids)
    torch.testing.assert_close(gpt.lm_head(hidden_states(gpt, ids)), logits)


def test_reward_ignores_right_padding() -> None:
    rm = RewardModel(_gpt()).eval()
    torch.nn.init.normal_(rm.head.weight)  # a non-zero head, so rewards differ
    alone, lengths = pad_batch([[1, 2, 3]], pad_id=0)
    padded, padded_lengths = pad_batch([[1, 2, 3], [4, 5, 6, 7, 8, 9]], pad_id=0)
    mask = torch.zeros_like(alone, dtype=torch.bool)
    mask[0, 2:] = True
    padded_mask = torch.zeros_like(padded, dtype=torch.bool)
    padded_mask[0, 2:3] = padded_mask[1, 3:] = True
    torch.testing.assert_close(rm(alone, lengths, mask)[0], rm(padded, padded_lengths, padded_mask)[0])


def test_sequence_logprobs_sum_only_masked_targets() -> None:
    gpt = _gpt()
    ids = torch.randint(11, (1, 6))
    mask = torch.tensor([[False, False, False, True, True, False]])
    log_probs = torch.log_softmax(gpt(ids)[0], dim=-1)[0]  # (T, V)
    expected = log_probs[2, ids[0, 3]] + log_probs[3, ids[0, 4]]
    torch.testing.assert_close(sequence_logprobs(gpt, ids, mask)[0], expected)


def test_reward_adds_the_backbones_log_prob_of_the_response() -> None:
    """With the head at zero (before training) the reward is the backbone's sum log-prob of the
    response tokens: what M1 knows about right answers, before any pair is seen."""
    gpt = _gpt()
    ids, lengths = pad_batch([[1, 2, 3, 4]], pad_id=0)
    mask = torch.tensor([[False, False, True, True]])
    torch.testing.assert_close(RewardModel(gpt, logprob_weight=1.0).eval()(ids, lengths, mask), sequence_logprobs(gpt, ids, mask))
    assert RewardModel(gpt, logprob_weight=0.0).eval()(ids, lengths, mask).item() == 0.0
