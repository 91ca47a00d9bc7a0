"""The pipeline's configuration: dataclass sections, YAML loading and ``key=value`` overrides.

The same keys live under ``pipeline:`` in the Hydra tree (``configs/pipeline/*.yaml``) and in
a ``--config FILE`` for ``deploy/deploy_codex_pipeline.py``. Unknown keys and wrong types
are collected and reported together in one :class:`PipelineConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.config_schema import (
    YamlFileError, build_dataclass, copy_tree, parse_value, read_yaml_file, set_dotted, split_override,
)
from codex_ml.errors import CodexMLError
from codex_ml.models.config import ModelConfig

__all__ = [
    "METHODS",
    "PipelineConfig",
    "PipelineConfigError",
    "PreferenceSection",
    "RewardSection",
    "StageSection",
    "apply_overrides",
    "load_config_file",
]

METHODS = ("rloo", "dpo")
REWARDS = ("rm", "exact", "rm+exact")
#: The built-in stages (registered names), in the order each builds on the one before.
BUILTIN_STAGES = ("pretrain", "sft", "reward", "preference")


class PipelineConfigError(CodexMLError, ValueError):
    """Unknown keys, wrong types or impossible values in a pipeline config (all listed)."""

    def __init__(self, problems: list[str], source: str = "pipeline config") -> None:
        super().__init__(f"{source} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass
class StageSection:
    """Optimisation settings of one supervised stage (pretrain, SFT, reward model)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100


@dataclass
class RewardSection(StageSection):
    """The reward model's settings: a supervised stage plus how its score is built."""

    # Initial weight of the RM backbone's log-probability of the response in the reward (learned
    # with the rest); 0 = the last-token head alone, which misses off-by-one answers.
    logprob_weight: float = 1.0


@dataclass
class PreferenceSection:
    """M2: RLOO against the reward model with a KL penalty to M1, or DPO on the pairs."""

    method: str = "rloo"
    reward: str = "rm"  # RLOO: rm (the learned RM), exact (check_answer: 1 right, 0 wrong) or rm+exact
    steps: int = 450
    # Policy-gradient steps are noisy: 64 prompts x 4 samples per step is what made RLOO gain
    # answer accuracy (16 x 4 at lr 1e-4 barely moved M1, +0.04).
    batch_prompts: int = 64  # RLOO: prompts per step; DPO: pairs per step
    samples_per_prompt: int = 4
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 100
    kl_coef: float = 0.3  # RLOO: reward - kl_coef * KL(policy || M1) per sequence
    normalize_advantage: bool = True  # RLOO: divide advantages by their batch std
    beta: float = 0.1  # DPO temperature
    dpo_nll: float = 1.0  # DPO: weight of the chosen answers' cross entropy (0 = plain DPO)
    temperature: float = 1.0
    max_new_tokens: int = 4
    eval_prompts: int = 128  # held-out prompts used to measure reward and KL
    eval_samples: int = 4  # samples per held-out prompt


def _default_stage(**changes: Any) -> Any:
    return field(default_factory=lambda: StageSection(**changes))


@dataclass
class PipelineConfig:
    """Everything one pipeline run needs; ``resolved()`` is what summary.json records."""

    corpus: str = "data/pipeline/corpus.jsonl"
    demos: str = "data/pipeline/demos.jsonl"
    prefs: str = "data/pipeline/prefs.jsonl"
    output_dir: str = "runs/pipeline"
    seed: int = 0
    force: bool = False
    tokenizer: str = "char"
    vocab_size: int = 256  # used by BPE only; char takes every character it sees
    val_fraction: float = 0.1  # share of corpus tokens and of demo/pref prompts held out
    # Tiny models gain nothing from more threads, and OpenMP's spinning threads slow to a crawl
    # when the cores are shared; 0 keeps torch's default.
    threads: int = 1
    # The documented pipeline figures were measured with a learned position table, so the
    # pipeline keeps it unless a config says model.position=rope (the shared default).
    model: ModelConfig = field(default_factory=lambda: ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=32,
                                                                   position="learned"))
    pretrain: StageSection = _default_stage(steps=600)
    sft: StageSection = _default_stage(steps=600, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    reward: RewardSection = field(default_factory=lambda: RewardSection(steps=1500, lr=5e-4, min_lr=5e-5, warmup_steps=10))
    preference: PreferenceSection = field(default_factory=PreferenceSection)
    #: Registered pipeline stages run in this order (`codex-ml plugins list pipeline-stages`); the
    #: four built-ins build on each other, so they stay in this order, plugin stages go between or after.
    stages: list[str] = field(default_factory=lambda: list(BUILTIN_STAGES))
    #: Health rules of the pipeline's run (docs/health.md): ``health.<rule>.<key>: value``; empty: the defaults.
    health: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """The config as plain nested dicts."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "pipeline config") -> PipelineConfig:
        """Build from nested dicts; every unknown key and wrong type is reported at once."""
        problems: list[str] = []
        # This module reads YAML with PyYAML's safe loader, which takes 1e-3 for a string: numeric_strings.
        config = build_dataclass(cls, data, "", problems, numeric_strings=True)
        if not problems:
            problems.extend(config.check())
        if problems:
            raise PipelineConfigError(problems, source)
        return config

    def check(self) -> list[str]:
        """Values that have the right type but cannot work (all of them, in key order)."""
        problems = _not_numbers(self, "")
        if self.preference.method not in METHODS:
            problems.append(f"preference.method: must be one of {list(METHODS)}, got {self.preference.method!r}")
        if self.preference.reward not in REWARDS:
            problems.append(f"preference.reward: must be one of {list(REWARDS)}, got {self.preference.reward!r}")
        problems += _plugin_problems(self)
        if not 0.0 < self.val_fraction < 0.5:
            problems.append(f"val_fraction: must be in (0, 0.5), got {self.val_fraction}")
        if not 0 <= self.seed < 2**32:
            problems.append(f"seed: must be in [0, 2**32), got {self.seed}")
        if self.threads < 0:
            problems.append(f"threads: must be >= 0 (0 = torch's default), got {self.threads}")
        problems += _model_problems(self.model)
        problems += _health_problems(self.health)
        for name in ("pretrain", "sft", "reward", "preference"):
            problems += _section_problems(name, getattr(self, name))
        pref = self.preference
        at_least = {"batch_prompts": 1, "samples_per_prompt": 2, "max_new_tokens": 1, "eval_prompts": 1, "eval_samples": 1}
        problems += [f"preference.{k}: must be >= {low}, got {getattr(pref, k)}" for k, low in at_least.items() if getattr(pref, k) < low]
        problems += [f"preference.{k}: must be > 0, got {getattr(pref, k)}" for k in ("beta", "temperature") if not getattr(pref, k) > 0]
        if self.reward.logprob_weight < 0:
            problems.append(f"reward.logprob_weight: must be >= 0 (0 = the head alone), got {self.reward.logprob_weight}")
        problems += [f"preference.{k}: must be >= 0, got {getattr(pref, k)}" for k in ("kl_coef", "dpo_nll") if getattr(pref, k) < 0]
        return problems


def _plugin_problems(cfg: PipelineConfig) -> list[str]:
    """Unregistered tokenizer or stage names (listing the registered ones) and a stage order the
    built-ins cannot run in. Reads entry-point metadata only; imports no plugin."""
    from codex_ml.plugins.select import name_problem

    out = [f"tokenizer: {p}" for p in [name_problem("tokenizers", cfg.tokenizer)] if p]
    out += [f"stages: {p}" for p in map(lambda n: name_problem("pipeline_stages", n), cfg.stages) if p]
    if [n for n in cfg.stages if n in BUILTIN_STAGES] != list(BUILTIN_STAGES) or len(set(cfg.stages)) != len(cfg.stages):
        out.append(f"stages: must list {', '.join(BUILTIN_STAGES)} once each in this order (plugin stages may go "
                   f"between or after them), got {cfg.stages}")
    return out


def _not_numbers(section: Any, prefix: str) -> list[str]:
    """NaN or infinite floats anywhere in ``section`` (they pass every range check)."""
    out = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out += _not_numbers(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(f"{prefix}{f.name}: must be a finite number, got {value}")
    return out


def _model_problems(model: ModelConfig) -> list[str]:
    return [f"model.{problem}" for problem in model.problems()]


def _section_problems(name: str, section: StageSection | PreferenceSection) -> list[str]:
    """The optimisation settings every stage shares."""
    out = [f"{name}.{k}: must be > 0, got {getattr(section, k)}" for k in ("steps", "eval_every", "lr")
           if not getattr(section, k) > 0]
    if isinstance(section, StageSection) and section.batch_size < 1:
        out.append(f"{name}.batch_size: must be >= 1, got {section.batch_size}")
    if not 0.0 <= section.min_lr <= section.lr:
        out.append(f"{name}.min_lr: must be in [0, lr={section.lr}], got {section.min_lr}")
    out += [f"{name}.{k}: must be >= 0, got {getattr(section, k)}" for k in ("warmup_steps", "weight_decay")
            if getattr(section, k) < 0]
    return out


def _parse_value(text: str) -> Any:
    """A YAML scalar (``3``, ``1e-3``, ``true``, ``dpo``) from an override's right-hand side."""
    import yaml

    try:
        return parse_value(text)
    except yaml.YAMLError:  # not YAML (``prompt=a: b: c``): the text itself is the value
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``section.key=value`` overrides on nested dicts (a copy); malformed ones are errors."""
    out = copy_tree(data)
    pairs = [split_override(item) for item in overrides]
    bad = [item for item, pair in zip(overrides, pairs) if pair is None or not pair[0].strip()]
    if bad:
        raise PipelineConfigError([f"override {item!r}: expected key=value, e.g. sft.steps=100" for item in bad], "command line")
    for item, (key, text) in zip(overrides, pairs):  # type: ignore[misc]
        blocked = set_dotted(out, key.strip().removeprefix("pipeline.").split("."), _parse_value(text))
        if blocked is not None:
            raise PipelineConfigError([f"override {item!r}: {blocked!r} is not a section"], "command line")
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Nested dicts from a YAML file; a top-level ``pipeline:`` key is unwrapped (Hydra layout)."""
    file = Path(path)
    try:
        data = read_yaml_file(file) or {}
    except YamlFileError as err:
        problem = f"config file {str(file)!r} does not exist" if err.missing else f"{file}: not valid YAML ({err.detail})"
        raise PipelineConfigError([problem], "--config") from None
    if not isinstance(data, dict):
        raise PipelineConfigError([f"{file}: expected a mapping at the top level"], "--config")
    if set(data) == {"pipeline"}:
        data = data["pipeline"]
    data = {k: v for k, v in (data or {}).items() if k != "defaults"}  # Hydra's own key
    return data


def _health_problems(section: Any) -> list[str]:
    """What the health rules refuse in the ``health:`` section (each naming its key)."""
    from codex_ml.health.config import HealthConfig, HealthConfigError

    try:
        config = HealthConfig.from_mapping(section)
    except HealthConfigError as exc:
        return list(exc.problems)
    # The pipeline's stages record events; acting on them (stop, skip, rollback) is train-model's.
    return [f"health.{name}.action: the pipeline records events only (action log); got {rule['action']!r}"
            for name, rule in config.active().items() if rule.get("action", "log") != "log"]
