"""M2: preference optimisation of the policy (a copy of M1).

- ``rloo``: REINFORCE Leave-One-Out. For each prompt, sample k responses, score each with
  the frozen reward model minus ``kl_coef`` times the sequence KL to the frozen M1, and use
  the mean score of the other k-1 samples as the baseline. ``reward=exact`` scores with
  :func:`check_answer` (1 right, 0 wrong) instead, ``rm+exact`` with both: comparison rows.
- ``dpo``: Direct Preference Optimisation on the preference pairs with M1 as the reference,
  plus ``dpo_nll`` times the chosen answers' cross entropy (without it DPO lowers the right
  answers' probability too, see :func:`_dpo_step`).

Both report, on held-out prompts, the mean RM reward of sampled responses, the KL to M1
and (when the prompts are checkable, as in the bundled data) the answer accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from codex_ml.models.transformer import GPT
from codex_ml.pipeline.config import PipelineConfig
from codex_ml.pipeline.example_data import check_answer
from codex_ml.pipeline.inputs import PipelineInputError, Preference
from codex_ml.pipeline.loop import (
    PromptCodec, StageContext, optimise, pair_accuracy, pair_batch, sample_completions, split_rows,
)
from codex_ml.pipeline.modeling import RewardModel, sequence_logprobs

__all__ = ["evaluate_policy", "require_checkable", "run_preference"]


def _freeze(*models: torch.nn.Module) -> None:
    for model in models:
        model.eval()
        model.requires_grad_(False)


def _score(policy: GPT, reference: GPT, rm: RewardModel, codec: PromptCodec, pairs: list[tuple[str, str]]):
    """(policy log-prob with grad, KL estimate, reward) per (prompt, response), each (B,)."""
    ids, lengths, mask = pair_batch(codec, pairs)
    logp = sequence_logprobs(policy, ids, mask)
    with torch.no_grad():
        kl = logp.detach() - sequence_logprobs(reference, ids, mask)  # log p/q at a sample from p
        reward = rm(ids, lengths, mask)
    return logp, kl, reward


def evaluate_policy(
    policy: GPT, reference: GPT, rm: RewardModel, codec: PromptCodec, prompts: Sequence[str], cfg: PipelineConfig, seed: int,
) -> dict[str, float]:
    """Mean RM reward, KL to the reference and (if checkable) accuracy of sampled responses."""
    section = cfg.preference
    generator = torch.Generator().manual_seed(seed)  # same samples' randomness at every evaluation
    samples = sample_completions(policy, codec, prompts, section.eval_samples, section.max_new_tokens, section.temperature, generator)
    pairs = [(p, r) for p, responses in zip(prompts, samples) for r in responses]
    _, kl, reward = _score(policy, reference, rm, codec, pairs)
    metrics = {"reward": reward.mean().item(), "kl": kl.mean().item()}
    checks = [check_answer(p, r) for p, r in pairs]
    if checks and all(c is not None for c in checks):
        metrics["answer_accuracy"] = sum(checks) / len(checks)
    return metrics


def _rloo_step(policy, reference, rm, codec, prompts, cfg, generator) -> tuple[torch.Tensor, dict[str, float]]:
    section = cfg.preference
    k = section.samples_per_prompt
    samples = sample_completions(policy, codec, prompts, k, section.max_new_tokens, section.temperature, generator)
    pairs = [(p, r) for p, responses in zip(prompts, samples) for r in responses]
    logp, kl, reward = _score(policy, reference, rm, codec, pairs)
    if section.reward != "rm":  # a verifiable reward, the comparison row for the learned RM
        exact = torch.tensor([float(check_answer(p, r) or False) for p, r in pairs])
        reward = exact if section.reward == "exact" else reward + exact
    score = (reward - section.kl_coef * kl).view(len(prompts), k)  # (P, k)
    baseline = (score.sum(dim=1, keepdim=True) - score) / (k - 1)  # mean of the other k-1 samples
    advantage = (score - baseline).view(-1)
    if section.normalize_advantage and advantage.numel() > 1:
        # Rewards from a sharp RM span several units; unit-scale advantages keep the step size steady.
        advantage = advantage / (advantage.std() + 1e-6)
    loss = -(advantage * logp).mean()
    return loss, {"reward": reward.mean().item(), "kl": kl.mean().item()}


def _dpo_step(policy, reference, codec, pairs: list[Preference], beta: float, nll: float) -> tuple[torch.Tensor, dict[str, float]]:
    ids_c, _, mask_c = pair_batch(codec, [(p.prompt, p.chosen) for p in pairs])
    ids_r, _, mask_r = pair_batch(codec, [(p.prompt, p.rejected) for p in pairs])
    with torch.no_grad():
        ref_margin = sequence_logprobs(reference, ids_c, mask_c) - sequence_logprobs(reference, ids_r, mask_r)
    chosen, rejected = sequence_logprobs(policy, ids_c, mask_c), sequence_logprobs(policy, ids_r, mask_r)
    logits = beta * (chosen - rejected - ref_margin)
    loss = -F.logsigmoid(logits).mean()
    if nll > 0:
        # Plain DPO only widens the margin, and the cheapest way down the loss is to lower both
        # answers: the right answer's log-prob fell (-1.3 -> -3.2 nats on seed 2's M1) and the
        # freed mass went to answers in neither set. The chosen answers' per-token cross entropy
        # (RPO, Pang et al. 2024) keeps the right answer's probability rising.
        loss = loss - nll * (chosen / mask_c[:, 1:].sum(dim=1)).mean()
    return loss, {"pair_accuracy": pair_accuracy(logits), "chosen_logp": chosen.mean().item(),
                  "rejected_logp": rejected.mean().item()}  # fmt: skip


def require_checkable(prompts: Sequence[str], reward: str) -> None:
    """``preference.reward`` with ``exact`` needs every training prompt to be an ``a+b=`` question."""
    unchecked = [p for p in prompts if check_answer(p, "") is None]
    if unchecked:
        raise PipelineInputError(
            f"preference.reward={reward} needs prompts whose answers can be checked (a+b=), but {len(unchecked)} "
            f"of {len(prompts)} are not, e.g. {unchecked[0]!r}; use preference.reward=rm")


def run_preference(
    policy: GPT, reference: GPT, rm: RewardModel, codec: PromptCodec, prefs: list[Preference],
    prompts: Sequence[str], cfg: PipelineConfig, ctx: StageContext,
) -> dict:
    """M2: optimise ``policy`` in place with the configured method; ``prompts`` are the training prompts."""
    _freeze(reference, rm)
    section = cfg.preference
    train_pairs, held_pairs = split_rows(prefs, cfg.val_fraction)
    held_prompts = sorted({p.prompt for p in held_pairs})[: section.eval_prompts]
    train_prompts = sorted(set(prompts) - set(held_prompts)) or sorted(set(prompts))
    if section.method == "rloo" and section.reward != "rm":
        require_checkable(train_prompts, section.reward)
    generator = torch.Generator().manual_seed(ctx.seed)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if section.method == "dpo":
            picks = torch.randint(len(train_pairs), (section.batch_prompts,), generator=generator).tolist()
            return _dpo_step(policy, reference, codec, [train_pairs[i] for i in picks], section.beta, section.dpo_nll)
        picks = torch.randint(len(train_prompts), (section.batch_prompts,), generator=generator).tolist()
        return _rloo_step(policy, reference, rm, codec, [train_prompts[i] for i in picks], cfg, generator)

    def evaluate() -> dict[str, float]:
        return evaluate_policy(policy, reference, rm, codec, held_prompts, cfg, ctx.seed + 1)

    return optimise(policy, section, step_fn, evaluate, ctx, f"M2 {section.method.upper()}")
