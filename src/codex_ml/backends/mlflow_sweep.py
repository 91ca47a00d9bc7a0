"""A sweep in MLflow: one parent run per sweep, each trial's run nested under it (``mlflow.parentRunId``).

The trials of a sweep may start at the same instant in separate processes (Hydra's launchers,
parallel Optuna workers), so the experiment and the parent run are looked up or created under the
sweep directory's lock (``codex_ml.rundir.sweep_dir``), and the parent's id is remembered in
``sweep.json`` (section ``mlflow``). When that file is lost, the parent is found again by its tags
(``codex_ml.sweep`` = the sweep's name, ``codex_ml.sweep_parent`` = ``true``) before a new one is made.

Without a tracking URI, a trial's local store is the sweep directory's ``mlruns/`` (shared by all
trials), not ``<trial>/mlruns``: nesting only means something inside one store.

The parent has no metrics of its own. It is RUNNING while a trial runs; a trial that closes and
sees no other RUNNING child marks it FINISHED (a trial killed by SIGKILL stays RUNNING, and so does
the parent, until that trial is resumed and closes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codex_ml.rundir.sweep_dir import read_sweep_file, sweep_lock, update_sweep_file

SWEEP_TAG = "codex_ml.sweep"
TRIAL_TAG = "codex_ml.trial"
PARENT_TAG = "codex_ml.sweep_parent"
#: MLflow's own tag for nesting (the UI draws children under their parent).
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
#: The section of sweep.json this module owns.
SECTION = "mlflow"


def store_dir(run_dir: Path, sweep: str | None) -> Path:
    """Where the default local store (``mlruns/``) goes: the sweep directory for a trial, else the run's."""
    return run_dir.parent if sweep else run_dir


def experiment_id_for(client: Any, name: str) -> str:
    """The experiment's id, creating the experiment if it does not exist.

    Runs that start together on a server (one experiment, many processes) race to create it: the
    losers get RESOURCE_ALREADY_EXISTS and read the winner's id back, rather than fail to start.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:  # created and deleted meanwhile: say what MLflow said
            raise
        return experiment.experiment_id


def open_parent(client: Any, experiment: str, sweep: str, sweep_dir: Path, uri: str) -> tuple[str, str]:
    """``(experiment id, parent run id)`` of the sweep, both created on first use, and the parent RUNNING.

    Call it holding :func:`sweep_lock`, and create the trial's run before letting go: two trials
    starting together then agree on one experiment and one parent, and a trial closing meanwhile
    (:func:`finish_parent_if_idle`) sees the new child RUNNING.
    """
    experiment_id = experiment_id_for(client, experiment)
    parent_id = _saved_parent(client, sweep_dir, uri, experiment_id) or _find_parent(client, experiment_id, sweep)
    if parent_id is None:
        tags = {SWEEP_TAG: sweep, PARENT_TAG: "true"}
        parent_id = client.create_run(experiment_id, run_name=sweep, tags=tags).info.run_id
    else:
        _mark_running(client, parent_id)
    update_sweep_file(sweep_dir, SECTION, {"tracking_uri": uri, "experiment_id": experiment_id,
                                           "parent_run_id": parent_id, "sweep": sweep})  # fmt: skip
    return experiment_id, parent_id


def resume_parent(client: Any, parent_id: str, sweep_dir: Path) -> None:
    """A resumed trial runs again: its parent is RUNNING again too (under the lock, see finish_parent_if_idle)."""
    with sweep_lock(sweep_dir):
        _mark_running(client, parent_id)


def _mark_running(client: Any, run_id: str) -> None:
    if client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")


def _saved_parent(client: Any, sweep_dir: Path, uri: str, experiment_id: str) -> str | None:
    saved = read_sweep_file(sweep_dir).get(SECTION)
    if not isinstance(saved, dict) or saved.get("tracking_uri") != uri or saved.get("experiment_id") != experiment_id:
        return None
    try:
        if client.get_run(saved["parent_run_id"]).info.lifecycle_stage == "active":
            return saved["parent_run_id"]
    except Exception:  # noqa: BLE001 - deleted, or another store: search by tags instead
        pass
    return None


def _find_parent(client: Any, experiment_id: str, sweep: str) -> str | None:
    # The sweep name is compared here, not in the filter string: no quoting rules to get wrong.
    found = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = 'true'",
                               order_by=["attributes.start_time ASC"])  # fmt: skip
    return next((r.info.run_id for r in found if r.data.tags.get(SWEEP_TAG) == sweep), None)


def child_tags(sweep: str, trial: str | None, parent_id: str) -> dict[str, str]:
    """The tags that nest a trial's run under the parent and name its sweep and trial."""
    tags = {PARENT_RUN_ID_TAG: parent_id, SWEEP_TAG: sweep}
    if trial:
        tags[TRIAL_TAG] = trial
    return tags


def finish_parent_if_idle(client: Any, experiment_id: str, parent_id: str, sweep_dir: Path) -> bool:
    """Mark the parent FINISHED when none of its children is RUNNING any more; True if it did.

    Called by a trial after it ended its own run, under the lock, so that two trials closing
    together do not both miss each other.
    """
    with sweep_lock(sweep_dir):
        running = client.search_runs([experiment_id], max_results=1, filter_string=(
            f"tags.`{PARENT_RUN_ID_TAG}` = '{parent_id}' and attributes.status = 'RUNNING'"))  # fmt: skip
        if running:
            return False
        client.set_terminated(parent_id, "FINISHED")
        return True
