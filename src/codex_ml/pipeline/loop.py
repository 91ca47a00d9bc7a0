"""The small optimisation loop every stage shares, and the prompt/response encoding they use.

A stage supplies ``step_fn(step) -> (loss, extra_metrics)`` and ``evaluate() -> metrics``;
:func:`optimise` owns the optimizer and the tqdm bar, and makes each update with the training core
(:mod:`codex_ml.training.core`: the shared warmup + cosine schedule, gradient clipping, logging
under the stage's prefix, ``m0/train/loss``, ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from codex_ml.training.core import Stepper, due, log_split, update_metrics
from codex_ml.training.schedule import warmup_cosine_lr

__all__ = [
    "PromptCodec", "StageContext", "is_heldout", "optimise", "pair_accuracy", "pair_batch", "sample_completions",
    "split_rows",
]


@dataclass
class StageContext:
    """What every stage needs besides its data: where to log and how to seed."""

    run: Any  # codex_ml.tracking.Run
    prefix: str  # metric prefix, e.g. "m0"
    seed: int
    progress: bool = True


def is_heldout(prompt: str, fraction: float) -> bool:
    """Deterministic held-out split by prompt hash: the same prompt is held out in demos and prefs."""
    bucket = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") / 2**32
    return bucket < fraction


def split_rows(rows: Sequence[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """(train, held-out) by prompt hash; a split left empty borrows rows so both can run."""
    train = [r for r in rows if not is_heldout(r.prompt, fraction)]
    held = [r for r in rows if is_heldout(r.prompt, fraction)]
    if not held:  # tiny inputs: hold out the tail instead
        cut = max(1, len(train) // 10)
        train, held = train[:-cut] or train, train[-cut:]
    if not train:
        train = held
    return train, held


def pair_accuracy(margins: torch.Tensor) -> float:
    """Share of pairs ranked right (margin > 0); a tie (margin exactly 0, e.g. the zero-initialised
    RM head before training) counts as half right, the expected score of a coin flip."""
    return ((margins > 0).float() + 0.5 * (margins == 0).float()).mean().item()


class PromptCodec:
    """Turns (prompt, response) text into token ids ending in one stop token."""

    def __init__(self, tokenizer: Any, block_size: int) -> None:
        """Use the tokenizer's end-of-text id as the stop token, else its newline."""
        self.tokenizer = tokenizer
        self.block_size = block_size
        if tokenizer.eot_id is not None:
            self.stop_id = tokenizer.eot_id
        else:
            newline = tokenizer.encode("\n")
            if len(newline) != 1:
                raise ValueError("the tokenizer needs an end-of-text token or a single-token newline")
            self.stop_id = newline[0]

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt, keeping room for at least a few response tokens."""
        return self.tokenizer.encode(prompt)[-max(1, self.block_size - 8):]

    def pair(self, prompt: str, response: str) -> tuple[list[int], int]:
        """Ids of prompt + response + stop, cut to the block size from the left, and the prompt length."""
        prompt_ids = self.prompt_ids(prompt)
        ids = prompt_ids + self.tokenizer.encode(response) + [self.stop_id]
        cut = max(0, len(ids) - self.block_size)
        return ids[cut:], max(1, len(prompt_ids) - cut)

    def response_text(self, ids: Sequence[int]) -> str:
        """Decode sampled response ids, dropping the stop token and what follows it."""
        ids = list(ids)
        if self.stop_id in ids:
            ids = ids[: ids.index(self.stop_id)]
        return self.tokenizer.decode(ids)


def pair_batch(codec: PromptCodec, pairs: Sequence[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (B, T), lengths (B,), response mask (B, T)) for (prompt, response) pairs."""
    from codex_ml.pipeline.modeling import pad_batch

    encoded = [codec.pair(p, r) for p, r in pairs]
    ids, lengths = pad_batch([e[0] for e in encoded], codec.stop_id)
    positions = torch.arange(ids.size(1)).unsqueeze(0)  # (1, T)
    starts = torch.tensor([e[1] for e in encoded]).unsqueeze(1)  # (B, 1)
    mask = (positions >= starts) & (positions < lengths.unsqueeze(1))  # response + stop tokens
    return ids, lengths, mask


@torch.no_grad()
def sample_completions(
    model: nn.Module, codec: PromptCodec, prompts: Sequence[str], n: int, max_new_tokens: int,
    temperature: float, generator: torch.Generator,
) -> list[list[str]]:
    """``n`` sampled responses per prompt (as text, stop token removed), prompts batched by length."""
    was_training = model.training
    model.eval()
    encoded = [codec.prompt_ids(p) for p in prompts]
    out: list[list[str]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(index)
    for length in sorted(by_length):  # sorted: a fixed order keeps sampling reproducible
        rows = [i for i in by_length[length] for _ in range(n)]
        idx = torch.tensor([encoded[i] for i in rows], dtype=torch.long)
        sampled = model.generate(idx, max_new_tokens, temperature=temperature, generator=generator)
        for row, ids in zip(rows, sampled[:, length:].tolist()):
            out[row].append(codec.response_text(ids))
    model.train(was_training)
    return out


def optimise(
    model: nn.Module, section: Any, step_fn: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]], ctx: StageContext, desc: str,
) -> dict[str, dict[str, float]]:
    """Train ``model`` for ``section.steps`` steps; returns the val metrics before and after."""
    torch.manual_seed(ctx.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=section.lr, weight_decay=section.weight_decay, betas=(0.9, 0.95))
    # The shared schedule counts updates from 0, the logged steps from 1.
    stepper = Stepper(optimizer, params, section.grad_clip, lr_at=lambda step: warmup_cosine_lr(
        step - 1, lr=section.lr, min_lr=section.min_lr, warmup_steps=section.warmup_steps, total_steps=section.steps))
    initial = _evaluate(model, evaluate)
    log_split(ctx.run, "val", initial, 0, ctx.prefix)
    final = initial
    bar = tqdm(range(1, section.steps + 1), desc=desc, disable=not ctx.progress, leave=True, dynamic_ncols=True)
    for step in bar:
        extra: dict[str, float] = {}

        def forward_backward() -> torch.Tensor:
            model.train()
            loss, more = step_fn(step)  # noqa: B023  (called right away, inside this iteration)
            extra.update(more)  # noqa: B023
            loss.backward()
            return loss.detach()

        update = stepper.update(step, forward_backward)
        log_split(ctx.run, "train", {**update_metrics(update), **extra}, step, ctx.prefix)
        if due(step, section.eval_every, step == section.steps):
            final = _evaluate(model, evaluate)
            log_split(ctx.run, "val", final, step, ctx.prefix)
        bar.set_postfix(loss=f"{update.loss:.3f}")
    bar.close()
    return {"initial": initial, "final": final}


def _evaluate(model: nn.Module, evaluate: Callable[[], dict[str, float]]) -> dict[str, float]:
    # Left in eval mode: the next update (or the stage's caller) sets the mode it needs.
    model.eval()
    with torch.no_grad():
        return evaluate()
