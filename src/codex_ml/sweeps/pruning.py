"""The trial's side of Optuna pruning: report each evaluation to the study, stop when pruned.

The task (one Hydra job) may run in another process than the sweeper (a joblib or submitit
launcher), so it reaches its trial through the study's storage, named in the sweeper's config
(``hydra.sweeper.storage``/``study_name``/``pruner``), and the trial number Hydra gives the job
(``hydra.job.num``: the sweeper launches trial N as job N). A pruned trial's run ends FINISHED
with the tag ``sweep.pruned=<step>``; the task then raises ``optuna.TrialPruned`` and the sweeper
records the trial PRUNED.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["PRUNED_TAG", "optuna_hook", "raise_pruned"]

#: The run tag a pruned trial's run ends with (its value: the step it was pruned after).
PRUNED_TAG = "sweep.pruned"


def optuna_hook(sweeper: Any, number: int) -> Callable[[int, float], dict[str, str] | None] | None:
    """An ``on_eval`` hook for the trainer reporting to trial ``number``; None outside an Optuna sweep
    or for a multi-objective study (Optuna cannot prune those)."""
    if sweeper is None or not sweeper.get("storage") or not sweeper.get("study_name"):
        return None
    import optuna
    from hydra.utils import instantiate

    pruner = instantiate(sweeper.get("pruner")) if sweeper.get("pruner") else optuna.pruners.NopPruner()
    # The sampler is not used here (nothing is suggested), so a cheap one.
    study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage, pruner=pruner,
                              sampler=optuna.samplers.RandomSampler())
    if len(study.directions) > 1:
        return None
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    trial = optuna.trial.Trial(study, trial_id)
    reported = set(trial._cached_frozen_trial.intermediate_values)  # before a kill: resumed trials see them again

    def on_eval(step: int, val_loss: float) -> dict[str, str] | None:
        if step not in reported:
            trial.report(val_loss, step)
        return {PRUNED_TAG: str(step)} if trial.should_prune() else None

    return on_eval


def raise_pruned(step: str) -> None:
    """End the task the way the sweeper records as PRUNED."""
    import optuna

    raise optuna.TrialPruned(f"pruned after step {step}")
