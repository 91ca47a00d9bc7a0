"""The training config tree (model, data, training, tracking, system_metrics) and its schema.

``train-model --config FILE key=value ...`` and the Hydra CLI (``python -m codex_ml.cli.main``)
both end here: the composed tree is checked against these dataclasses by :func:`validate_config`,
which reports *every* unknown key, wrong type and out-of-range value in one :class:`ConfigError`.
Keys a file leaves out take the defaults below, so a config only needs what it changes.

This module imports neither torch nor omegaconf at import time.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from codex_ml.config_schema import (
    YamlFileError, check_mapping, delete_dotted, merge_tree, parse_value, read_yaml_file, set_dotted, split_override,
)
from codex_ml.errors import CodexMLError
from codex_ml.models.config import ModelConfig  # the one declaration of the model's shape
from codex_ml.tracking.config import TrackingConfig, TrackingConfigError
from codex_ml.training.faults import fault_problems  # stdlib only

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "SystemMetricsConfig", "TrainConfig", "TrainingConfig",
    "load_config", "parse_overrides", "validate_config",
]  # fmt: skip

#: Top-level keys Hydra (or the pipeline runner) owns; they are not part of the training schema.
NON_SCHEMA_KEYS = ("defaults", "hydra", "pipeline", "sweep")  # sweep: the multirun settings (docs/sweeps.md)
#: TrackingConfig fields set through the ``system_metrics`` section instead of ``tracking``.
_SYSTEM_FIELDS = ("system_metrics", "system_metrics_interval", "system_metrics_collectors")


class ConfigError(CodexMLError, ValueError):
    """A config with problems; the message lists all of them, one per line."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config ({source}): {len(self.problems)} problem(s):\n{listing}")


@dataclass
class DataConfig:
    """Where the text comes from and how it is tokenized."""

    #: A .txt or .jsonl corpus; None means the sample text bundled with the package.
    path: str | None = None
    #: A registered tokenizer (built-ins: char, bpe; `codex-ml plugins list tokenizers`).
    tokenizer: str = "char"
    #: A registered dataset that supplies the documents; None: "corpus" when ``path`` is set,
    #: else "sample" (the bundled text). Called with ``path`` (see docs/plugins.md).
    dataset: str | None = None
    #: Target vocabulary size for the BPE tokenizer (ignored for "char").
    vocab_size: int = 512
    #: Fraction of the token stream (its tail) held out for validation.
    val_fraction: float = 0.1

    def problems(self) -> list[str]:
        """Values the data pipeline cannot work with."""
        out = [] if 0.0 < self.val_fraction < 1.0 else [f"val_fraction must be in (0, 1), got {self.val_fraction}"]
        if self.vocab_size < 1:
            out.append(f"vocab_size must be >= 1, got {self.vocab_size}")
        from codex_ml.plugins.select import name_problem  # reads entry points; imports no plugin

        out += [f"{key}: {problem}" for key, group in (("tokenizer", "tokenizers"), ("dataset", "datasets"))
                if getattr(self, key) is not None and (problem := name_problem(group, getattr(self, key)))]
        return out


@dataclass
class TrainingConfig:
    """Optimisation, evaluation, logging and checkpointing."""

    seed: int = 1337
    max_steps: int = 2000
    batch_size: int = 12
    grad_accum_steps: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    #: 0.99 rather than 0.999: tiny batches give noisy second moments (nanoGPT's char setup).
    beta2: float = 0.99
    #: Clip the global gradient norm to this; <= 0 disables clipping (the norm is still logged).
    grad_clip: float = 1.0
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 1
    histogram_interval: int = 500
    sample_interval: int = 500
    sample_tokens: int = 200
    checkpoint_interval: int = 500
    keep_last: int = 3
    #: End this session after this many steps (checkpointed) although max_steps is larger;
    #: ``--resume`` continues. The schedule always spans max_steps. None: run to max_steps.
    stop_after_steps: int | None = None
    progress: bool = True
    #: Faults to inject on purpose, to test alerting: ``nan@300``, ``spike@500:x20``, ``hang@400:30s``,
    #: ``slow_data@200:0.5s``, ``leak@100:10MB``; several comma-separated or as a list
    #: (:mod:`codex_ml.training.faults`). None: a normal run.
    fault: str | list[str] | None = None
    #: How many times health rules with ``action: rollback`` may rewind the run to its last good
    #: checkpoint; one more firing then stops the run (FAILED) instead of looping forever.
    max_rollbacks: int = 3

    def problems(self) -> list[str]:
        """Values the loop cannot run with."""
        positive = ("max_steps", "batch_size", "grad_accum_steps", "eval_interval", "eval_batches", "log_interval",
                    "histogram_interval", "sample_interval", "checkpoint_interval", "keep_last")
        out = [f"{k} must be > 0, got {getattr(self, k)}" for k in positive if getattr(self, k) <= 0]
        out += [f"{k} must be >= 0, got {getattr(self, k)}" for k in ("warmup_steps", "sample_tokens", "weight_decay", "max_rollbacks") if getattr(self, k) < 0]
        if not 0.0 <= self.min_lr <= self.lr:
            out.append(f"min_lr ({self.min_lr}) must be in [0, lr={self.lr}]")
        if self.stop_after_steps is not None and self.stop_after_steps <= 0:
            out.append(f"stop_after_steps must be > 0 or null, got {self.stop_after_steps}")
        # AdamW's betas; torch would refuse them only when the optimizer is built.
        out += [f"{k} must be in [0, 1), got {getattr(self, k)}" for k in ("beta1", "beta2") if not 0.0 <= getattr(self, k) < 1.0]
        if not 0 <= self.seed < 2**32:
            out.append(f"seed must be in [0, 2**32), got {self.seed}")
        # Parsed here, at load, so a bad token is a config error before anything runs.
        out += [f"fault: {problem}" for problem in fault_problems(self.fault)]
        return out


@dataclass
class SystemMetricsConfig:
    """System telemetry: ``path`` None (off), "AUTO" (<checkpoint_dir>/system_metrics.jsonl) or a path."""

    path: str | None = None
    interval: float = 15.0
    #: Registered collectors to sample, by name; None: the built-in set.
    collectors: list[str] | None = None

    def problems(self) -> list[str]:
        """An interval that cannot be honoured."""
        ok = math.isfinite(self.interval) and self.interval >= 0
        return [] if ok else [f"interval must be a finite number of seconds >= 0, got {self.interval}"]


@dataclass
class TrainConfig:
    """The whole validated tree. ``tracking`` holds only the TrackingConfig keys the config set."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tracking: dict[str, Any] = field(default_factory=dict)
    system_metrics: SystemMetricsConfig = field(default_factory=SystemMetricsConfig)
    #: The ``health:`` section as given (rule settings; docs/health.md), checked by HealthConfig.
    health: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain nested data (for checkpoints and run params)."""
        return dataclasses.asdict(self)

    def tracking_config(self) -> TrackingConfig:
        """A TrackingConfig from the ``tracking`` and ``system_metrics`` sections (flags apply on top)."""
        return TrackingConfig(**self.tracking, system_metrics=self.system_metrics.path,
                              system_metrics_interval=self.system_metrics.interval,
                              system_metrics_collectors=self.system_metrics.collectors)

    def with_tracking(self, tracking: TrackingConfig) -> TrainConfig:
        """A copy whose tracking sections hold ``tracking``'s effective values (what a resume reuses).

        The run name and output root are left out: a resumed run is named by its directory.
        """
        values = {f.name: getattr(tracking, f.name) for f in fields(tracking)
                  if f.name not in (*_SYSTEM_FIELDS, "run_name", "output_root")}
        system = SystemMetricsConfig(tracking.system_metrics, tracking.system_metrics_interval,
                                     tracking.system_metrics_collectors)
        return dataclasses.replace(self, tracking=values, system_metrics=system)


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig,
                              "system_metrics": SystemMetricsConfig}


def validate_config(raw: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Check ``raw`` (nested mappings) against the schema; raise one ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [f"the top level must be a mapping of sections, got {type(raw).__name__}"])
    valid = sorted([*_SECTIONS, "tracking", "health"])
    for key in raw:
        if key not in _SECTIONS and key not in ("tracking", "health") and key not in NON_SCHEMA_KEYS:
            problems.append(f"{key}: unknown section (valid: {', '.join(valid)})")
    sections = {name: _build_section(cls, raw.get(name), name, problems) for name, cls in _SECTIONS.items()}
    tracking = _check_tracking(raw.get("tracking"), problems)
    health = _check_health(raw.get("health"), problems)
    if problems:
        raise ConfigError(source, problems)
    config = TrainConfig(tracking=tracking, health=health, **sections)
    try:
        config.tracking_config()
    except TrackingConfigError as exc:  # its message names each key (and flag) already
        raise ConfigError(source, exc.problems) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, [f"tracking: {exc}"]) from exc
    return config


def _build_section(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    """An instance of ``cls`` from ``data``, appending (not raising) every problem found."""
    values = _check_mapping(data, typing.get_type_hints(cls), prefix, problems)
    if values is None:
        return cls()
    instance = cls(**values)
    # YAML's .nan/.inf are floats: NaN passes every range check below, so refuse it here.
    problems.extend(f"{prefix}.{k} must be a number, got {v}" for k, v in values.items() if isinstance(v, float) and math.isnan(v))
    problems.extend(f"{prefix}.{p}" for p in instance.problems())
    return instance


def _check_tracking(data: Any, problems: list[str]) -> dict[str, Any]:
    hints = {k: v for k, v in typing.get_type_hints(TrackingConfig).items() if k not in _SYSTEM_FIELDS}
    values = _check_mapping(data, hints, "tracking", problems)
    return values or {}


def _check_health(data: Any, problems: list[str]) -> dict[str, Any]:
    """The ``health:`` section as given, after HealthConfig (and the trainer) accepted it."""
    from codex_ml.health.config import HealthConfigError
    from codex_ml.training.health_guard import health_config

    try:
        health_config(data)
    except HealthConfigError as exc:
        problems.extend(exc.problems)
    return dict(data) if isinstance(data, Mapping) else {}


def _check_mapping(data: Any, hints: dict[str, Any], prefix: str, problems: list[str]) -> dict[str, Any] | None:
    """Type-checked values of ``data`` (None when it is absent or not a mapping)."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        problems.append(f"{prefix}: expected a mapping, got {type(data).__name__} {data!r}")
        return None
    return check_mapping(data, hints, prefix, problems)


def parse_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Hydra-style ``key.sub=value`` overrides as a nested dict (values parsed as YAML) and deletions.

    ``+key=value`` and ``++key=value`` are accepted like plain ones; ``~key`` deletes a key.
    """
    tree: dict[str, Any] = {}
    deletions: list[str] = []
    problems: list[str] = []
    for item in overrides:
        if item.startswith("~"):
            deletions.append(item[1:].split("=", 1)[0])
            continue
        pair = split_override(item.lstrip("+"))
        if pair is None or any(not part for part in pair[0].split(".")):
            problems.append(f"override {item!r}: expected key.subkey=value (e.g. training.max_steps=200)")
            continue
        # A later override replaces a value in its way: `a=1 a.b=2` makes `a` a section.
        set_dotted(tree, pair[0].split("."), parse_value(pair[1], _yaml_loader()), replace=True)
    if problems:
        raise ConfigError("command line", problems)
    return tree, deletions


def _yaml_loader() -> Any:
    """OmegaConf's YAML loader (as Hydra uses): ``1e-3`` is a float there, a string in plain PyYAML."""
    try:
        from omegaconf._utils import get_yaml_loader

        return get_yaml_loader()
    except ImportError:  # a future omegaconf without it: PyYAML's safe loader
        import yaml

        return yaml.SafeLoader


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict, interpolations resolved; errors name the file (and line)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    try:
        data = read_yaml_file(path, lambda file: OmegaConf.to_container(OmegaConf.load(file), resolve=True))
    except YamlFileError as exc:
        missing = f"config file {path} does not exist (try configs/training/base.yaml)"
        raise ConfigError(str(path), [missing if exc.missing else f"not valid YAML: {exc.detail}"]) from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(str(path), [str(exc).splitlines()[0]]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read ``path`` (or start from ``base``, e.g. a checkpoint's config), apply overrides, validate."""
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        raw = merge_tree(raw, load_yaml_file(path))
    changes, deletions = parse_overrides(overrides)
    raw = merge_tree(raw, changes)
    for dotted in deletions:
        delete_dotted(raw, dotted)
    for key in NON_SCHEMA_KEYS:
        raw.pop(key, None)
    source = str(path) if path is not None else "resumed config" if base else "defaults"
    return validate_config(raw, source + (" + overrides" if overrides else ""))


def schema_sections() -> dict[str, list[str]]:
    """Every section and its keys (for help texts and docs)."""
    out = {name: [f.name for f in fields(cls)] for name, cls in _SECTIONS.items()}
    out["tracking"] = [f.name for f in fields(TrackingConfig) if f.name not in _SYSTEM_FIELDS]
    from codex_ml.health.config import BUILTIN_RULES

    out["health"] = ["enabled", *BUILTIN_RULES]
    return out
