"""The ``train-model`` job behind the Typer command: config, resume, training, the closing report.

Precedence, lowest first: schema defaults < the config file (or, with ``--resume``, the config
saved in the run's checkpoint) < ``key=value`` overrides < tracking flags on the command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from codex_ml.config_schema import is_override
from codex_ml.tracking.config import TrackingConfig

__all__ = ["effective_tracking", "elastic_start", "report_result", "run_train_model", "split_override_from_flag",
           "train_job"]

def split_override_from_flag(tracking: TrackingConfig, overrides: list[str]) -> tuple[TrackingConfig, list[str]]:
    """``--system-metrics training.max_steps=5`` means AUTO followed by an override, not a path
    called ``training.max_steps=5`` (an option with an optional value cannot tell by itself)."""
    value = tracking.system_metrics
    if value and is_override(value):
        return tracking.replace(system_metrics="AUTO"), [value, *overrides]
    return tracking, overrides


def effective_tracking(from_config: TrackingConfig, from_flags: TrackingConfig) -> TrackingConfig:
    """``from_config`` with every field the flags changed from its default replaced."""
    defaults = TrackingConfig()
    changes = {f.name: getattr(from_flags, f.name) for f in fields(TrackingConfig)
               if getattr(from_flags, f.name) != getattr(defaults, f.name)}
    return from_config.replace(**changes)


def run_train_model(config_path: Path | None, overrides: Sequence[str], resume: Path | None,
                    flags: TrackingConfig, progress: bool = True) -> Any:
    """Load/validate the config (or the resumed run's), train, and print where the results went."""
    from codex_ml.training.config import load_config
    from codex_ml.training.errors import ResumeError

    flags, overrides = split_override_from_flag(flags, list(overrides))
    resume_point = None
    if resume is not None:
        if config_path is not None:
            raise ResumeError("pass either --config or --resume: a resumed run keeps the config saved in its "
                              "checkpoint (change single values with key=value overrides)")
        from codex_ml.tracking.run_lock import check_not_in_use
        from codex_ml.training.components import find_resume_point

        check_not_in_use(resume)  # a run still training is refused before its checkpoint is read
        resume_point = find_resume_point(resume)
        config = load_config(base=resume_point.state["config"], overrides=overrides)
    else:
        config = load_config(config_path, overrides)
    if not progress:
        config.training.progress = False
    tracking = effective_tracking(config.tracking_config(), flags)
    try:
        result = train_job(config, tracking, resume_point)
    except KeyboardInterrupt:
        # Ctrl-C: the trainer has saved a checkpoint of the last step and closed the run KILLED
        # (or, at a second Ctrl-C, stopped at once). 128 + SIGINT, as a shell reports it.
        raise SystemExit(130) from None
    if result is not None:
        report_result(result)
    return result


def train_job(config: Any, tracking: TrackingConfig, resume_point: Any = None) -> Any:
    """Train ``config``, continuing ``resume_point`` if given. Under ``torchrun --max-restarts`` without one,
    a restarted worker group continues the run its job started; None when that run had already finished."""
    from codex_ml.training.trainer import train

    plan = None
    if resume_point is None:
        plan, resume_point = elastic_start(config, tracking)
        if plan is not None and plan.action == "finished":
            return None
        if plan is not None:
            tracking = tracking.replace(run_name=plan.run_name)
    return train(config.with_tracking(tracking), tracking, resume=resume_point, elastic=plan)


def elastic_start(config: Any, tracking: TrackingConfig) -> tuple[Any, Any]:
    """``(plan, resume point)`` under ``torchrun --max-restarts=N`` (codex_ml.training.elastic), else
    ``(None, None)``. Joins the process group early: the ranks agree on the run before training."""
    from codex_ml.training.elastic import ElasticLaunch, plan_elastic, say, shared_store_warning

    launch = ElasticLaunch.from_env()
    if launch is None:
        return None, None
    from codex_ml.training.components import find_resume_point
    from codex_ml.training.distributed import cleanup, init_distributed

    warning = shared_store_warning()
    if warning and launch.restart_count == 0 and os.environ.get("RANK", "0") == "0":
        print(warning, file=sys.stderr, flush=True)  # before joining: that is where it would fail
    info, _ = init_distributed(config.training.device)
    plan = plan_elastic(launch, tracking.output_root, tracking.run_name, info)
    point = find_resume_point(plan.run_dir) if plan.action == "resume" else None
    if info.is_main:
        say(plan, None if point is None else int(point.state["step"]))
    if plan.action == "finished":
        cleanup()
    return plan, point


def report_result(result: Any) -> None:
    """Print (on rank 0) how training ended and where its outputs are."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from codex_ml.rundir.paths import RunPaths
    from codex_ml.tracking.viewing import describe_outputs

    state = f"finished at step {result.last_step}" if result.finished else f"stopped at step {result.last_step} (continue with --resume {result.run_dir})"
    print(f"{state}: train loss {result.final_train_loss:.4f}, "
          f"val loss {result.final_val_loss:.4f} (best {result.best_val_loss:.4f}), "
          f"{result.tokens_per_s:,.0f} tokens/s", file=sys.stderr)
    paths = RunPaths(result.run_dir)
    from codex_ml.rundir.run_files import read_json

    sinks = read_json(paths.run_file).get("sinks", [])
    for line in describe_outputs(paths, sinks):
        print(line)
