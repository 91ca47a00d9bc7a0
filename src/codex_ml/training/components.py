"""Building the pieces of a training job: data, tokenizer, model, optimizer, schedule, resume state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codex_ml.models.transformer import GPT, GPTConfig
from codex_ml.rundir.paths import CHECKPOINTS_DIR, TOKENIZER_DIR, RunPaths
from codex_ml.training.config import TrainConfig
from codex_ml.training.errors import ResumeError
from codex_ml.training.schedule import WarmupCosine

__all__ = ["CHECKPOINT_DIR", "TOKENIZER_DIR", "Data", "ResumePoint", "adamw_decaying_matrices", "build_model", "build_optimizer",
           "build_scheduler", "checkpoint_config", "find_resume_point", "prepare_data"]

CHECKPOINT_DIR = CHECKPOINTS_DIR


@dataclass
class Data:
    """The tokenizer and the two token streams (int64 tensors on the CPU)."""

    tokenizer: Any
    train: torch.Tensor  # (N_train,)
    val: torch.Tensor  # (N_val,)
    source: Path


def corpus_path(config: TrainConfig) -> Path:
    """The configured corpus, or the sample text bundled with the package."""
    from codex_ml.data.sample import sample_text_path

    return Path(config.data.path).expanduser() if config.data.path else sample_text_path()


def prepare_data(config: TrainConfig, tokenizer_dir: Path | None = None) -> Data:
    """Read and tokenize the corpus. A ``tokenizer_dir`` (resume) reloads the run's tokenizer
    instead of training a new one, so ids mean the same as before."""
    from codex_ml.data.corpus import encode_corpus, split_train_val
    from codex_ml.data.datasets import read_dataset
    from codex_ml.data.tokenizers import load_tokenizer, train_tokenizer

    documents, source = read_dataset(config.data.dataset, config.data.path)  # a plugin by name (data.dataset)
    if tokenizer_dir is not None:
        tokenizer = load_tokenizer(tokenizer_dir)
    else:
        tokenizer = train_tokenizer(config.data.tokenizer, documents, vocab_size=config.data.vocab_size)
    ids = encode_corpus(documents, tokenizer)
    train, val = split_train_val(ids, config.data.val_fraction)
    as_tensor = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    return Data(tokenizer, as_tensor(train), as_tensor(val), source)


def build_model(config: TrainConfig, vocab_size: int) -> GPT:
    """The GPT described by ``config.model`` for a ``vocab_size`` vocabulary."""
    from codex_ml.plugins.select import build_model as build_named  # model.name: "gpt" or a plugin

    return build_named(config.model.name, GPTConfig.from_model(config.model, vocab_size))


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """The AdamW ``config.training`` describes (see :func:`adamw_decaying_matrices`)."""
    t = config.training
    return adamw_decaying_matrices(model, t.lr, t.weight_decay, (t.beta1, t.beta2))


def adamw_decaying_matrices(model: torch.nn.Module, lr: float, weight_decay: float,
                            betas: tuple[float, float]) -> torch.optim.AdamW:  # fmt: skip
    """AdamW that decays only matrices (weights, embeddings), not biases or LayerNorm gains;
    the fused implementation where this torch has one for the parameters' device."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The default (one small op per tensor and update term) cost ~3 ms of a ~40 ms CPU step of the
    # benchmark model; the fused kernel ~1 ms, with the same losses to 5 decimals over 400 steps
    # (issue 14: train-model vs the reference trainer). torch < 2.4 has no fused CPU AdamW and
    # refuses fused=True at construction: fall back to the default then.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + cosine decay from ``lr`` to ``min_lr`` over ``max_steps`` updates."""
    t = config.training
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(t.lr, t.min_lr, t.warmup_steps, t.max_steps))


def checkpoint_config(saved: dict[str, Any]) -> dict[str, Any]:
    """The config a checkpoint was trained with, filled in for keys added since it was saved."""
    model = dict(saved.get("model") or {})
    # Before model.position existed every model used a learned position table; the default
    # is now rope, so an old checkpoint must say what it holds.
    model.setdefault("position", "learned")
    return {**saved, "model": model}


@dataclass
class ResumePoint:
    """A run directory to continue and the checkpoint it continues from.

    ``checkpoint_path`` is None for a run that has no checkpoint: it restarts from step 0 and
    ``state`` holds only ``config`` and ``step``. ``skipped`` names the newer checkpoints that
    did not load, each with why.
    """

    run_dir: Path
    checkpoint_path: Path | None
    state: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def restart(self) -> bool:
        """True when the run has no checkpoint and trains again from step 0."""
        return self.checkpoint_path is None


def find_resume_point(run_dir: str | Path) -> ResumePoint:
    """Check that ``run_dir`` is a run and load its newest checkpoint that loads (read only).

    A run with no checkpoint at all (stopped before its first one) restarts from step 0 with
    the config its ``params.json`` recorded.
    """
    from codex_ml.training.checkpoints import CheckpointError, find_latest_checkpoint, load_newest_checkpoint

    root = Path(run_dir)
    if not root.is_dir():
        raise ResumeError(f"cannot resume {root}: no such directory (pass a run directory such as runs/<name>)")
    run_file = RunPaths(root).run_file
    if not run_file.is_file():
        raise ResumeError(f"cannot resume {root}: it is not a run directory (no run.json); pass runs/<name>")
    try:
        json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResumeError(f"cannot resume {root}: {run_file} is unreadable ({exc})") from exc
    folder = root / CHECKPOINT_DIR
    if find_latest_checkpoint(folder) is None:
        return _restart_point(root)
    if not (root / TOKENIZER_DIR).is_dir():
        raise ResumeError(f"cannot resume {root}: its tokenizer ({root / TOKENIZER_DIR}) is missing")
    try:
        latest, state, skipped = load_newest_checkpoint(folder)
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume {root}: {exc}. To train it again from step 0, move {folder} "
                          "aside and pass --resume again") from exc
    for key in ("model", "optimizer", "scheduler", "step", "config"):
        if key not in state:
            raise ResumeError(f"cannot resume from {latest}: the checkpoint has no {key!r} entry")
    state["config"] = checkpoint_config(state["config"])
    return ResumePoint(root, Path(latest), state, skipped)


def _restart_point(root: Path) -> ResumePoint:
    """A run without a checkpoint: step 0 and the config recorded in its params.json."""
    from codex_ml.training.config import schema_sections

    params_file = RunPaths(root).params
    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResumeError(f"cannot resume {root}: it has no checkpoint, and the config it started with "
                          f"({params_file}) is unreadable ({exc}): it stopped while starting; delete {root} and start it "
                          "again, or choose another --run-name") from exc
    # params.json holds the resolved config flattened (plus facts such as model.num_parameters,
    # which are not config keys and are left out here).
    config = {section: {key: params[f"{section}.{key}"] for key in keys if f"{section}.{key}" in params}
              for section, keys in schema_sections().items() if section != "health"}
    # health: is nested one level deeper (health.<rule>.<setting>): rebuild it from its flat keys.
    config["health"] = {}
    for flat, value in params.items():
        parts = flat.split(".")
        if parts[0] == "health" and len(parts) == 3:
            config["health"].setdefault(parts[1], {})[parts[2]] = value
        elif parts[0] == "health" and len(parts) == 2:
            config["health"][parts[1]] = value
    return ResumePoint(root, None, {"config": checkpoint_config(config), "step": 0})
