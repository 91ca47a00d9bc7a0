"""The Hydra entry point: ``python -m codex_ml.cli.main [key=value ...] [tracking flags]``.

Composes ``configs/config.yaml`` (the same tree ``train-model --config`` reads: model, data,
training, tracking, system_metrics), validates it against the schema and trains. With a
``pipeline=<name>`` choice it hands the config to the pipeline runner instead.

The old-style tracking flags (``--enable-wandb``, ``--mlflow-enable``/``--enable-mlflow``,
``--mlflow-tracking-uri X``, ``--mlflow-experiment Y``, ``--enable-tensorboard``,
``--system-metrics [AUTO|PATH]``, ``--system-metrics-interval S``, ``--prometheus-port P``, ...)
are taken out of ``sys.argv`` before Hydra parses it; they win over the config's ``tracking``.

With ``-m`` (Hydra multirun: the basic sweeper, or ``hydra/sweeper=optuna``) every job is a trial
of a sweep, a complete run in ``sweeps/<sweep.name>/trial-<N>`` (codex_ml.sweeps, docs/sweeps.md);
the job returns the objective (``sweep.objective``, ``sweep.reduce``) and a re-run resumes the sweep.

The config directory is ``$CODEX_ML_CONFIG_DIR``, else ``./configs`` when it has a config.yaml,
else the ``configs/`` of the source checkout; Hydra's own ``--config-dir`` also works.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from codex_ml.config_schema import is_override
from codex_ml.errors import CodexMLError
from codex_ml.sweeps.naming import is_multirun, with_sweep_name
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.flags import add_tracking_arguments, fill_optional_values, tracking_config_from

__all__ = ["OverrideError", "check_overrides", "config_dir", "main", "split_tracking_flags"]

CONFIG_DIR_ENV = "CODEX_ML_CONFIG_DIR"
OPTUNA_SWEEPER = "codex_optuna"


def config_dir() -> Path:
    """Where the Hydra config tree lives (see the module docstring)."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV]).resolve()
    local = Path.cwd() / "configs"
    if (local / "config.yaml").is_file():
        return local.resolve()
    return Path(__file__).resolve().parents[3] / "configs"


def split_tracking_flags(argv: list[str]) -> tuple[TrackingConfig, list[str]]:
    """Parse the tracking flags out of ``argv``; return them and the arguments left for Hydra."""
    # `--system-metrics training.max_steps=5`: the flag has no value; the override is Hydra's.
    argv = fill_optional_values(argv)
    parser = argparse.ArgumentParser(prog="python -m codex_ml.cli.main", add_help=False, allow_abbrev=False)
    add_tracking_arguments(parser)
    known, rest = parser.parse_known_args(argv)
    return tracking_config_from(known), [_hydra_override(arg) for arg in rest]


def _hydra_override(arg: str) -> str:
    """Adapt one plain ``key=value`` to our tree.

    ``training=tiny`` picks a config group option; the training configs are whole trees, so
    that group is mounted at the top (``training@_global_``). Any other plain key becomes
    ``++key=value`` (set, adding it if absent): a typo then reaches the schema check, which
    reports every unknown key at once, instead of Hydra stopping at the first.
    """
    key, sep, value = arg.partition("=")
    if not sep or not is_override(arg) or key.startswith(("+", "~")) or "@" in key:
        return arg
    if key == "training":
        return f"training@_global_={value}"
    if key == "hydra/sweeper" and value == "optuna":
        # Ours (configs/hydra/sweeper/codex_optuna.yaml): the stock sweeper plus pruning and resume.
        return f"{key}={OPTUNA_SWEEPER}"
    if "." not in key and ("/" in key or (config_dir() / key).is_dir()):
        return arg  # another config group choice, e.g. pipeline=<name>, hydra/sweeper=optuna
    return f"++{arg}"


def _run(cfg: Any, flags: TrackingConfig) -> Any:
    """Validate the composed config, then train (or run the chosen pipeline, or a sweep's trial)."""
    from omegaconf import OmegaConf

    from codex_ml.cli.train_command import report_result, effective_tracking
    from codex_ml.training.config import NON_SCHEMA_KEYS, validate_config

    from omegaconf.errors import OmegaConfBaseException

    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:  # e.g. an override with a broken ${interpolation}
        raise OverrideError(str(exc)) from None
    schema_part = {k: v for k, v in raw.items() if k not in NON_SCHEMA_KEYS}
    config = validate_config(schema_part, "hydra config " + str(config_dir() / "config.yaml") + " + overrides")
    tracking = effective_tracking(config.tracking_config(), flags)
    if raw.get("pipeline") is not None:
        from codex_ml.pipeline.runner import run_from_hydra

        return run_from_hydra(cfg, tracking=tracking)
    hydra = _multirun_job()
    if hydra is not None:
        from codex_ml.sweeps.trial import run_trial

        return run_trial(config, tracking, raw.get("sweep") or {}, hydra)
    from codex_ml.cli.train_command import train_job

    result = train_job(config, tracking)  # under torchrun --max-restarts, a restart continues its run
    if result is not None:
        report_result(result)
    return result


def _multirun_job() -> Any:
    """Hydra's config of this job when it is one job of a multirun (a sweep's trial), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    return hydra if hydra is not None and hydra.mode == RunMode.MULTIRUN else None


def main(argv: list[str] | None = None) -> None:
    """Strip the tracking flags, then let Hydra compose the config and call the trainer.

    Every user error (a flag out of range, an unknown group option, a bad override, a config
    the schema refuses) is one ``error:`` line and exit status 2, before anything is written.
    """
    import hydra

    from codex_ml.errors import user_errors

    with user_errors():
        flags, rest = split_tracking_flags(sys.argv[1:] if argv is None else argv)
        check_overrides(rest)
    if is_multirun(rest):  # the sweep directory must be the same when the same command runs again
        rest, name = with_sweep_name(rest)
        print(f"[sweep] {name} (re-run this command to resume it)", file=sys.stderr, flush=True)
    if "--help" in rest or "-h" in rest:  # Hydra's help below does not know our flags
        parser = argparse.ArgumentParser(prog="python -m codex_ml.cli.main", add_help=False,
                                         usage="%(prog)s [key=value ...] [tracking flags] [hydra flags]")
        add_tracking_arguments(parser)
        print(parser.format_help())
    sys.argv = [sys.argv[0], *rest]

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def _entry(cfg: Any) -> Any:
        with user_errors():
            try:
                return _run(cfg, flags)  # a sweep's trial returns its objective to the sweeper
            except KeyboardInterrupt:
                # Ctrl-C: the trainer has checkpointed the last step and closed the run KILLED (or,
                # at a second Ctrl-C, stopped at once). 128 + SIGINT, as train-model and a shell say.
                raise SystemExit(130) from None

    _entry()


class OverrideError(CodexMLError, ValueError):
    """An override Hydra cannot apply: an unknown group option, bad syntax, a broken interpolation."""


def check_overrides(rest: list[str]) -> None:
    """Compose the config once with Hydra's compose API before Hydra's own run.

    Hydra reports its own errors as several lines and exit status 1; composing first turns a
    typo such as ``training=tinyy`` into one OverrideError. Skipped when Hydra flags
    (``--cfg``, ``--multirun``, ``--config-dir``, ...) are given: Hydra then handles everything.
    """
    if any(arg.startswith("-") for arg in rest):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        # Not resolved here: ${hydra:...} interpolations need Hydra's run; _run resolves.
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            compose("config", overrides=rest)
    except (HydraException, OmegaConfBaseException) as exc:
        message = str(exc).split("\nConfig search path:")[0].strip()  # the search path is noise here
        raise OverrideError(message) from None
if __name__ == "__main__":
    main()
