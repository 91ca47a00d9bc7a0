"""``codex-ml sweep SPEC.yaml``: a sweep described in a file, run as the Hydra multirun it stands for.

The file is a reviewable record of a sweep with no shell quoting; every key maps to one override of
``python -m codex_ml.cli.main -m ...`` (docs/sweeps.md lists them), so both entry points run the
same code and make the same sweep directory. An example: configs/sweep_files/lr_depth.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codex_ml.sweeps.objective import SweepError

__all__ = ["SPEC_KEYS", "spec_arguments"]

SPEC_KEYS = ("name", "sweeper", "training", "objective", "reduce", "params", "set", "optuna")
OPTUNA_KEYS = ("n_trials", "n_jobs", "direction", "sampler", "pruner", "sampler_options", "pruner_options")
SWEEPERS = ("basic", "optuna")


def spec_arguments(path: Path) -> list[str]:
    """The ``python -m codex_ml.cli.main`` arguments the sweep file at ``path`` stands for."""
    spec = _load(path)
    sweeper = spec.get("sweeper", "basic")
    if sweeper not in SWEEPERS:
        raise SweepError(f"{path}: sweeper: {sweeper!r}: use basic or optuna")
    if "optuna" in spec and sweeper != "optuna":
        raise SweepError(f"{path}: an optuna: section needs sweeper: optuna")
    args = ["-m"] + (["hydra/sweeper=optuna"] if sweeper == "optuna" else [])
    if spec.get("training") is not None:
        args.append(f"training={spec['training']}")
    for key in ("name", "objective", "reduce"):
        if spec.get(key) is not None:
            args.append(f"sweep.{key}={spec[key]}")
    args += _optuna_arguments(path, _mapping(path, spec, "optuna"))
    for key, value in _mapping(path, spec, "params").items():
        args.append(f"{key}={_sweep_value(value, sweeper)}")
    args += [f"{key}={_value(value)}" for key, value in _mapping(path, spec, "set").items()]
    return args


def _load(path: Path) -> dict[str, Any]:
    """The file as a mapping with known keys only (every unknown key reported at once)."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"cannot read the sweep file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: a sweep file is a mapping of {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(SPEC_KEYS)})")
    return spec


def _mapping(path: Path, spec: dict[str, Any], key: str) -> dict[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise SweepError(f"{path}: {key}: must be a mapping of key: value")
    return value


def _optuna_arguments(path: Path, options: dict[str, Any]) -> list[str]:
    """``hydra/sweeper/sampler=...``, ``hydra.sweeper.n_trials=...`` and the sampler/pruner options."""
    unknown = sorted(set(options) - set(OPTUNA_KEYS))
    if unknown:
        raise SweepError(f"{path}: optuna: unknown key(s) {', '.join(unknown)} (valid: {', '.join(OPTUNA_KEYS)})")
    args = [f"hydra/sweeper/{k}={options[k]}" for k in ("sampler", "pruner") if options.get(k) is not None]
    args += [f"hydra.sweeper.{k}={_value(options[k])}" for k in ("n_trials", "n_jobs", "direction") if k in options]
    for group in ("sampler", "pruner"):
        for key, value in _mapping(path, options, f"{group}_options").items():
            args.append(f"hydra.sweeper.{group}.{key}={_value(value)}")
    return args


def _sweep_value(value: Any, sweeper: str) -> str:
    """A list is the set of values to try (``choice(...)`` for Optuna, a comma list for the basic
    sweeper); a string is used as written (``interval(1e-4, 1e-2)``, ``range(1, 4)``...)."""
    if isinstance(value, list):
        items = ",".join(_value(v) for v in value)
        return f"choice({items})" if sweeper == "optuna" else items
    return _value(value)


def _value(value: Any) -> str:
    """A YAML scalar as Hydra's override grammar reads it back."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
