"""The three supervised stages: M0 pretraining, M1 SFT and the RM reward model.

Each function trains the model it is given in place and returns
``{"initial": val_metrics, "final": val_metrics}`` from :func:`codex_ml.pipeline.loop.optimise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from codex_ml.data.corpus import encode_corpus, split_train_val
from codex_ml.models.transformer import GPT
from codex_ml.pipeline.config import PipelineConfig
from codex_ml.pipeline.example_data import REJECTION_KINDS, rejection_kind
from codex_ml.pipeline.inputs import Demo, PipelineInputError, Preference
from codex_ml.pipeline.loop import PromptCodec, StageContext, optimise, pair_accuracy, pair_batch, split_rows
from codex_ml.pipeline.modeling import RewardModel, token_logprobs

__all__ = [
    "EVAL_BATCHES", "completion_loss", "preference_scores", "pretrain_streams", "reward_eval_metrics", "run_pretrain",
    "run_reward", "run_sft",
]

EVAL_BATCHES = 4  # fixed validation windows per pretraining evaluation


def _windows(data: torch.Tensor, starts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([data[s : s + length] for s in starts.tolist()])  # (B, T)
    y = torch.stack([data[s + 1 : s + 1 + length] for s in starts.tolist()])  # (B, T), shifted by one
    return x, y


def pretrain_streams(texts: list[str], tokenizer: Any, cfg: PipelineConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train tokens, val tokens, window length) for M0. The runner calls it before anything is
    written: a corpus too short for a window of 2 tokens in each split is a PipelineInputError."""
    stream = encode_corpus(texts, tokenizer).astype(np.int64)
    train_np, val_np = split_train_val(stream, cfg.val_fraction)
    length = min(cfg.model.block_size, len(train_np) - 1, len(val_np) - 1)
    if length < 2:
        raise PipelineInputError(
            f"corpus {cfg.corpus!r} is too short to pretrain on: {len(stream)} tokens, split into {len(train_np)} "
            f"for training and {len(val_np)} held out (val_fraction={cfg.val_fraction}); each part needs at least "
            "3 tokens for one window. Add text to the corpus")
    return torch.from_numpy(train_np), torch.from_numpy(val_np), length


def run_pretrain(model: GPT, tokenizer: Any, texts: list[str], cfg: PipelineConfig, ctx: StageContext) -> dict:
    """M0: causal language modelling on random windows of the corpus token stream."""
    train, val, length = pretrain_streams(texts, tokenizer, cfg)
    section = cfg.pretrain
    generator = torch.Generator().manual_seed(ctx.seed)
    fixed = torch.Generator().manual_seed(ctx.seed + 1)
    val_batches = [
        _windows(val, torch.randint(len(val) - length, (section.batch_size,), generator=fixed), length)
        for _ in range(EVAL_BATCHES)
    ]

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = _windows(train, torch.randint(len(train) - length, (section.batch_size,), generator=generator), length)
        _, loss = model(x, y)
        return loss, {}

    def evaluate() -> dict[str, float]:
        loss = sum(model(x, y)[1].item() for x, y in val_batches) / len(val_batches)
        return {"loss": loss, "perplexity": float(np.exp(loss))}

    return optimise(model, section, step_fn, evaluate, ctx, "M0 pretrain")


def completion_loss(model: GPT, codec: PromptCodec, demos: Sequence[Demo]) -> torch.Tensor:
    """Mean cross entropy over completion (+ stop) tokens only: the SFT objective."""
    ids, _, mask = pair_batch(codec, [(d.prompt, d.completion) for d in demos])
    target = mask[:, 1:].float()  # (B, T-1): predictions of completion tokens
    return -(token_logprobs(model, ids) * target).sum() / target.sum()


def run_sft(model: GPT, codec: PromptCodec, demos: list[Demo], cfg: PipelineConfig, ctx: StageContext) -> dict:
    """M1: supervised fine-tuning on demos, loss on completion tokens only; val = held-out completion loss."""
    train, held = split_rows(demos, cfg.val_fraction)
    generator = torch.Generator().manual_seed(ctx.seed)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        picks = torch.randint(len(train), (cfg.sft.batch_size,), generator=generator).tolist()
        return completion_loss(model, codec, [train[i] for i in picks]), {}

    def evaluate() -> dict[str, float]:
        chunks = [held[i : i + 256] for i in range(0, len(held), 256)]
        total = sum(completion_loss(model, codec, chunk).item() * len(chunk) for chunk in chunks)
        return {"completion_loss": total / len(held)}

    return optimise(model, cfg.sft, step_fn, evaluate, ctx, "M1 SFT")


def preference_scores(rm: RewardModel, codec: PromptCodec, prefs: Sequence[Preference]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards (B,) of the chosen and of the rejected responses."""
    chosen = pair_batch(codec, [(p.prompt, p.chosen) for p in prefs])
    rejected = pair_batch(codec, [(p.prompt, p.rejected) for p in prefs])
    return rm(*chosen), rm(*rejected)


def reward_eval_metrics(rm: RewardModel, codec: PromptCodec, held: Sequence[Preference]) -> dict[str, float]:
    """Held-out loss, margin and pairwise accuracy, overall and per rejection kind
    (``accuracy_off_by_one``, ... for numeric answers): an RM that is right on random wrong answers
    but blind to off-by-one ones is what a policy learns to exploit."""
    margins = torch.cat([torch.sub(*preference_scores(rm, codec, held[i : i + 256])) for i in range(0, len(held), 256)])
    metrics = {"loss": -F.logsigmoid(margins).mean().item(), "accuracy": pair_accuracy(margins), "margin": margins.mean().item()}
    kinds = [rejection_kind(p.chosen, p.rejected) for p in held]
    for kind in REJECTION_KINDS:
        picked = torch.tensor([k == kind for k in kinds])
        if picked.any():
            metrics[f"accuracy_{kind}"] = pair_accuracy(margins[picked])
    return metrics


def run_reward(rm: RewardModel, codec: PromptCodec, prefs: list[Preference], cfg: PipelineConfig, ctx: StageContext) -> dict:
    """RM: Bradley-Terry loss ``-log sigmoid(r_chosen - r_rejected)``; val = held-out pairwise accuracy."""
    train, held = split_rows(prefs, cfg.val_fraction)
    generator = torch.Generator().manual_seed(ctx.seed)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        picks = torch.randint(len(train), (cfg.reward.batch_size,), generator=generator).tolist()
        chosen, rejected = preference_scores(rm, codec, [train[i] for i in picks])
        margin = chosen - rejected
        return -F.logsigmoid(margin).mean(), {"accuracy": pair_accuracy(margin)}

    return optimise(rm, cfg.reward, step_fn, lambda: reward_eval_metrics(rm, codec, held), ctx, "RM reward")


# -- the built-in stages under the one stage protocol: stage(state, ctx) -> metrics ------------------
# Each builds its model from the models before it (state.models), then trains it or reuses its
# verified checkpoint through state.train_or_reuse, which records it in summary.json.


def pretrain_stage(state: Any, ctx: StageContext) -> None:
    """Built-in stage ``pretrain`` (M0): a fresh model, causal language modelling on the corpus."""
    from codex_ml.pipeline.modeling import build_gpt

    cfg = state.cfg
    torch.manual_seed(ctx.seed)  # the initial weights
    m0 = state.models["M0"] = build_gpt(cfg.model, state.tokenizer.vocab_size)
    state.train_or_reuse("M0", m0, cfg.pretrain, ("corpus", "tokenizer"),
                         lambda: run_pretrain(m0, state.tokenizer, state.inputs.corpus, cfg, ctx), ctx)  # fmt: skip


def sft_stage(state: Any, ctx: StageContext) -> None:
    """Built-in stage ``sft`` (M1): a copy of M0 fine-tuned on the demos (M1 is M0 without demos)."""
    import copy

    if not state.inputs.demos:
        state.models["M1"] = state.models["M0"]
        state.stages["M1"] = {"status": "skipped", "reason": "demos file is empty; M1 is M0", "seconds": 0.0}
        state.hashes["M1"] = state.hashes["M0"]
        return
    m1 = state.models["M1"] = copy.deepcopy(state.models["M0"])
    state.train_or_reuse("M1", m1, state.cfg.sft, ("demos", "M0"),
                         lambda: run_sft(m1, state.codec, state.inputs.demos, state.cfg, ctx), ctx)  # fmt: skip


def reward_stage(state: Any, ctx: StageContext) -> None:
    """Built-in stage ``reward`` (RM): a scalar head on a copy of M1, trained on the preference pairs."""
    import copy

    rm = state.models["RM"] = RewardModel(copy.deepcopy(state.models["M1"]), state.cfg.reward.logprob_weight)
    state.train_or_reuse("RM", rm, state.cfg.reward, ("prefs", "M1"),
                         lambda: run_reward(rm, state.codec, state.inputs.prefs, state.cfg, ctx), ctx)  # fmt: skip


def preference_stage(state: Any, ctx: StageContext) -> None:
    """Built-in stage ``preference`` (M2): a copy of M1 optimised against RM (RLOO or DPO)."""
    import copy

    from codex_ml.pipeline.preference import run_preference

    m1, data = state.models["M1"], state.inputs
    m2 = state.models["M2"] = copy.deepcopy(m1)
    prompts = [d.prompt for d in data.demos] + [p.prompt for p in data.prefs]
    state.train_or_reuse("M2", m2, state.cfg.preference, ("prefs", "demos", "M1", "RM"),
                         lambda: run_preference(m2, m1, state.models["RM"], state.codec, data.prefs, prompts, state.cfg, ctx),
                         ctx)  # fmt: skip
