"""One trial of a sweep: a complete run directory ``<sweep.root>/<sweep.name>/trial-<NNN>``.

Called by the Hydra task for every job of a multirun (``python -m codex_ml.cli.main -m ...``,
basic or Optuna sweeper). Trial ``N`` is Hydra's job number ``N`` (the Optuna sweeper launches
trial number N as job N), so a re-run of the same command finds the same directories:

- a trial whose run is FINISHED is not trained again; its objective is read back from its
  ``metrics.ndjson`` (a pruned one is reported pruned again);
- a trial whose run exists but did not finish (killed, crashed) resumes from its newest
  checkpoint, as ``train-model --resume`` would;
- a new trial starts a new run.

The task returns the objective: ``sweep.reduce`` (min by default) of metric ``sweep.objective``
(``val/loss`` by default) over the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from codex_ml.sweeps.objective import SweepError, check_objective, objective_value
from codex_ml.sweeps.pruning import PRUNED_TAG, optuna_hook, raise_pruned

__all__ = ["run_trial", "trial_name"]


def trial_name(number: int) -> str:
    """``trial-007``: zero-padded so a directory listing is in trial order."""
    return f"trial-{number:03d}"


def run_trial(config: Any, tracking: Any, settings: dict[str, Any], hydra: Any) -> float:
    """Train (or resume, or read back) the trial of this Hydra job; return its objective."""
    from codex_ml.rundir.run_files import read_json, read_run_json
    from codex_ml.rundir.paths import RunPaths

    key, reduce = str(settings.get("objective") or ""), str(settings.get("reduce") or "")
    check_objective(key, reduce)
    if not settings.get("name"):  # a multirun not started with -m (e.g. hydra.mode=MULTIRUN): no name was made
        raise SweepError("sweep.name is not set: start a sweep with -m, or name it with sweep.name=NAME")
    name, number = str(settings["name"]), int(hydra.job.num)
    trial = trial_name(number)
    sweep_dir = Path(str(settings.get("root") or "sweeps")) / name
    run_dir = sweep_dir / trial
    tracking = tracking.replace(output_root=str(sweep_dir), run_name=trial, sweep=name, trial=trial)
    config = config.with_tracking(tracking)
    previous = read_run_json(run_dir)
    if previous:
        _check_same_trial(run_dir, list(hydra.overrides.task))
    if previous.get("status") == "FINISHED":
        print(f"[sweep] {trial}: finished before, not trained again", file=sys.stderr, flush=True)
        pruned = read_json(RunPaths(run_dir).tags).get(PRUNED_TAG)
    else:
        hook = optuna_hook(hydra.get("sweeper"), number) if key == "val/loss" else None
        result = _train(config, tracking, run_dir if previous else None, hook)
        pruned = (result.early_stop or {}).get(PRUNED_TAG)
    if pruned is not None:
        print(f"[sweep] {trial} ({run_dir}): pruned after step {pruned}", file=sys.stderr, flush=True)
        raise_pruned(pruned)
    value = objective_value(run_dir, key, reduce)
    print(f"[sweep] {trial} ({run_dir}): {key} {reduce} = {value:.4f}", file=sys.stderr, flush=True)
    return value


def _train(config: Any, tracking: Any, resume_dir: Path | None, hook: Any) -> Any:
    """A new run, or the interrupted one continued from its checkpoint."""
    from codex_ml.training.trainer import train

    resume = None
    if resume_dir is not None:
        from codex_ml.tracking.run_lock import check_not_in_use
        from codex_ml.training.components import find_resume_point

        check_not_in_use(resume_dir)  # another worker of the same sweep may be training it
        resume = find_resume_point(resume_dir)
        where = "step 0 (no checkpoint yet)" if resume.restart else f"its checkpoint of step {resume.state['step']}"
        print(f"[sweep] {resume_dir.name}: interrupted before, resuming from {where}", file=sys.stderr, flush=True)
    return train(config, tracking, resume=resume, on_eval=hook)


def _check_same_trial(run_dir: Path, overrides: list[str]) -> None:
    """Refuse to reuse a trial directory trained with other values of this job's overrides
    (the same sweep.name given to a different command)."""
    from codex_ml.rundir.paths import RunPaths
    from codex_ml.rundir.run_files import read_json

    params = read_json(RunPaths(run_dir).params)
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key not in params or "@" in key:
            continue
        if not _same(params[key], value):
            raise SweepError(f"{run_dir} was trained with {key}={params[key]}, this job has {key}={value}: "
                             "another sweep already uses this name; pick a new one with sweep.name=NAME")


def _same(recorded: Any, value: str) -> bool:
    """Whether an override's text means the recorded parameter (1e-3 == 0.001)."""
    try:
        return float(recorded) == float(value)
    except (TypeError, ValueError):
        return str(recorded).lower() == value.strip("'\"").lower()
