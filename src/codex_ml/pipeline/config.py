"""The pipeline's configuration: dataclass sections, YAML loading and ``key=value`` overrides.

The same keys live under ``pipeline:`` in the Hydra tree (``configs/pipeline/*.yaml``) and in
a ``--config FILE`` for ``deploy/deploy_codex_pipeline.py``. Unknown keys and wrong types
are collected and reported together in one :class:`PipelineConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError

__all__ = [
    "METHODS",
    "ModelSection",
    "PipelineConfig",
    "PipelineConfigError",
    "PreferenceSection",
    "StageSection",
    "apply_overrides",
    "load_config_file",
]

METHODS = ("rloo", "dpo")


class PipelineConfigError(CodexMLError, ValueError):
    """Unknown keys, wrong types or impossible values in a pipeline config (all listed)."""

    def __init__(self, problems: list[str], source: str = "pipeline config") -> None:
        super().__init__(f"{source} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass
class ModelSection:
    """Transformer shape shared by every stage (RM adds a scalar head on top)."""

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 32
    dropout: float = 0.0


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
class PreferenceSection:
    """M2: RLOO against the reward model with a KL penalty to M1, or DPO on the pairs."""

    method: str = "rloo"
    steps: int = 300
    batch_prompts: int = 16
    samples_per_prompt: int = 4
    lr: float = 1e-4
    min_lr: float = 5e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 50
    kl_coef: float = 0.3  # RLOO: reward - kl_coef * KL(policy || M1) per sequence
    normalize_advantage: bool = True  # RLOO: divide advantages by their batch std
    beta: float = 0.1  # DPO temperature
    temperature: float = 1.0
    max_new_tokens: int = 5
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
    model: ModelSection = field(default_factory=ModelSection)
    pretrain: StageSection = _default_stage(steps=600)
    sft: StageSection = _default_stage(steps=600, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    reward: StageSection = _default_stage(steps=3000, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    preference: PreferenceSection = field(default_factory=PreferenceSection)

    def resolved(self) -> dict[str, Any]:
        """The config as plain nested dicts."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "pipeline config") -> PipelineConfig:
        """Build from nested dicts; every unknown key and wrong type is reported at once."""
        problems: list[str] = []
        config = _build(cls, data, "", problems)
        if not problems:
            problems.extend(config.check())
        if problems:
            raise PipelineConfigError(problems, source)
        return config

    def check(self) -> list[str]:
        """Values that have the right type but cannot work."""
        problems = []
        if self.preference.method not in METHODS:
            problems.append(f"preference.method: must be one of {list(METHODS)}, got {self.preference.method!r}")
        if self.tokenizer not in ("char", "bpe"):
            problems.append(f"tokenizer: must be 'char' or 'bpe', got {self.tokenizer!r}")
        if not 0.0 < self.val_fraction < 0.5:
            problems.append(f"val_fraction: must be in (0, 0.5), got {self.val_fraction}")
        for section in ("pretrain", "sft", "reward", "preference"):
            for name in ("steps", "eval_every"):
                if getattr(getattr(self, section), name) <= 0:
                    problems.append(f"{section}.{name}: must be > 0")
        if self.threads < 0:
            problems.append(f"threads: must be >= 0 (0 = torch's default), got {self.threads}")
        if self.preference.samples_per_prompt < 2:
            problems.append("preference.samples_per_prompt: RLOO needs at least 2 samples per prompt")
        return problems


def _coerce(value: Any, kind: Any, key: str, problems: list[str]) -> Any:
    """``value`` as ``kind`` (int, float, str, bool), or a problem naming ``key``."""
    kind = {"int": int, "float": float, "str": str, "bool": bool}.get(kind, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # PyYAML reads 1e-3 (no dot) as a string; it is still clearly a number
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    problems.append(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return None


def _build(cls: Any, data: Any, prefix: str, problems: list[str]) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, recording problems instead of raising."""
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or '(top level)'}: expected a mapping, got {type(data).__name__}")
        return cls()
    known = {f.name: f for f in fields(cls)}
    for key in sorted(set(data) - set(known)):
        problems.append(f"{prefix}{key}: unknown key (valid: {', '.join(sorted(known))})")
    default = cls()
    values = {}
    for name, spec in known.items():
        if name not in data:
            continue
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            merged = {**dataclasses.asdict(current), **data[name]} if isinstance(data[name], dict) else data[name]
            values[name] = _build(type(current), merged, f"{prefix}{name}.", problems)
        else:
            coerced = _coerce(data[name], spec.type, f"{prefix}{name}", problems)
            if coerced is not None:
                values[name] = coerced
    return cls(**values)


def _parse_value(text: str) -> Any:
    """A YAML scalar (``3``, ``1e-3``, ``true``, ``dpo``) from an override's right-hand side."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``section.key=value`` overrides on nested dicts (a copy); malformed ones are errors."""
    out = _deep_copy(data)
    bad = [item for item in overrides if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        raise PipelineConfigError([f"override {item!r}: expected key=value, e.g. sft.steps=100" for item in bad], "command line")
    for item in overrides:
        key, text = item.split("=", 1)
        parts = key.strip().removeprefix("pipeline.").split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PipelineConfigError([f"override {item!r}: {part!r} is not a section"], "command line")
        node[parts[-1]] = _parse_value(text)
    return out


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Nested dicts from a YAML file; a top-level ``pipeline:`` key is unwrapped (Hydra layout)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise PipelineConfigError([f"config file {str(file)!r} does not exist"], "--config")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PipelineConfigError([f"{file}: not valid YAML ({err})"], "--config") from None
    if not isinstance(data, dict):
        raise PipelineConfigError([f"{file}: expected a mapping at the top level"], "--config")
    if set(data) == {"pipeline"}:
        data = data["pipeline"]
    data = {k: v for k, v in (data or {}).items() if k != "defaults"}  # Hydra's own key
    return data
