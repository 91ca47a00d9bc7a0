"""Per-backend halves of replay: what a backend already holds, and the sink that writes to it.

Each backend object has ``sink`` (a codex_ml tracking sink), ``info`` (the RunInfo the
sink starts with), ``target`` (where it writes, for messages), ``name(key)`` (the name the
backend stores a metric under) and ``existing(keys)`` (``{name: {step: count}}``).
Backends are imported here, only when a replay runs.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from codex_ml.monitoring.runs import RunSource
from codex_ml.tracking.sink import RunInfo

Existing = dict[str, dict[int, int]]


def make(kind: str, source: RunSource, info: RunInfo, *, tracking_uri: str | None, experiment: str | None) -> Any:
    """The backend object for ``kind`` (tensorboard, mlflow or wandb)."""
    if kind == "tensorboard":
        return TensorBoardBackend(info)
    if kind == "mlflow":
        return MlflowBackend(info, tracking_uri, experiment)
    return WandbBackend(info)


def _missing_extra(feature: str, package: str, extra: str) -> Exception:
    from codex_ml.errors import MissingExtraError

    return MissingExtraError(feature, package, extra)


class TensorBoardBackend:
    """Event files in ``<run>/tensorboard``, read with TensorBoard's EventAccumulator."""

    def __init__(self, info: RunInfo) -> None:
        try:
            from codex_ml.tracking.tensorboard_sink import TensorBoardSink
            from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
        except ImportError as exc:
            raise _missing_extra("replay into TensorBoard", "tensorboard", "tensorboard") from exc
        self.info = info
        self.sink = TensorBoardSink(flush_secs=1.0)
        self.target = str(info.paths.tensorboard)

    def name(self, key: str) -> str:
        """TensorBoard keeps tags verbatim."""
        return key

    def existing(self, keys: list[str]) -> Existing:
        """Scalar points per tag and step in every event file of the folder."""
        from tensorboard.backend.event_processing import event_accumulator as ea

        folder = self.info.paths.tensorboard
        if not folder.is_dir():
            return {}
        # Keep every event, and keep out-of-order steps (purging them is for restarted jobs).
        acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
        acc.Reload()
        return {tag: dict(Counter(e.step for e in acc.Scalars(tag))) for tag in acc.Tags()["scalars"]}


class MlflowBackend:
    """One MLflow run, found by run.json or by its ``codex_ml.run_id`` tag."""

    def __init__(self, info: RunInfo, tracking_uri: str | None, experiment: str | None) -> None:
        try:
            from mlflow.tracking import MlflowClient

            from codex_ml.tracking.mlflow_sink import MlflowSink
        except ImportError as exc:
            raise _missing_extra("replay into MLflow", "mlflow", "mlflow") from exc
        from codex_ml.tracking import mlflow_utils as mu
        from codex_ml.tracking.names import KeyMapper, mlflow_name

        saved = info.backends.get("mlflow", {})
        self.uri = mu.resolve_tracking_uri(tracking_uri or saved.get("tracking_uri"), info.paths.root)
        mu.prepare_environment(self.uri)
        self.experiment = experiment or saved.get("experiment") or "codex_ml"
        self.client = MlflowClient(tracking_uri=self.uri)
        same_store = saved.get("tracking_uri") == self.uri
        key_map = saved.get("key_map", {}) if same_store else {}
        # The same rule, known names and first-appearance order as the sink: same names.
        self.name = KeyMapper(mlflow_name, lambda message: None, path_like=mu.is_file_store(self.uri), known=key_map)
        self.run_id = self._find_run(saved.get("run_id") if same_store else None, info.run_id)
        state = {"run_id": self.run_id, "tracking_uri": self.uri, "experiment": self.experiment, "key_map": key_map}
        self.info = replace(info, backends={**info.backends, "mlflow": state})
        self.sink = MlflowSink(self.uri, self.experiment)
        self.target = f"{self.uri}, experiment {self.experiment!r}" + (f", run {self.run_id}" if self.run_id else ", new run")

    def _find_run(self, saved_id: str | None, codex_run_id: str) -> str | None:
        if saved_id:
            try:
                if self.client.get_run(saved_id).info.lifecycle_stage == "active":
                    return saved_id
            except Exception:  # noqa: BLE001 - deleted or never reached the store: search instead
                pass
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return None
        found = self.client.search_runs([experiment.experiment_id], filter_string=f"tags.`codex_ml.run_id` = '{codex_run_id}'",
                                        max_results=1, order_by=["attributes.start_time ASC"])  # fmt: skip
        return found[0].info.run_id if found else None

    def existing(self, keys: list[str]) -> Existing:
        """Metric history of the run, per mapped name and step."""
        if self.run_id is None:
            for key in keys:
                self.name(key)  # claim names in the sink's order
            return {}
        out: Existing = {}
        for key in keys:
            name = self.name(key)
            history = self.client.get_metric_history(self.run_id, name)
            if history:
                out[name] = dict(Counter(m.step for m in history))
        return out


class WandbBackend:
    """The run's W&B id, offline unless WANDB_MODE says otherwise; reads local .wandb files."""

    def __init__(self, info: RunInfo) -> None:
        try:
            import wandb  # noqa: F401

            from codex_ml.tracking.wandb_sink import WandbSink
        except ImportError as exc:
            raise _missing_extra("replay into W&B", "wandb", "wandb") from exc
        from codex_ml import env

        saved = info.backends.get("wandb", {})
        project = saved.get("project") or os.environ.get(env.WANDB_PROJECT) or "codex_ml"
        self.info = info
        self.sink = WandbSink(project)
        self.target = f"{Path(info.paths.wandb) / 'wandb'}, project {project!r}, id {saved.get('run_id') or info.run_id[:16]}"

    def name(self, key: str) -> str:
        """W&B keeps keys verbatim."""
        return key

    def existing(self, keys: list[str]) -> Existing:
        """Points per key and step over every offline run file of this run."""
        from codex_ml.tracking.wandb_reader import find_run_files, read_history
        from codex_ml.tracking.wandb_sink import STEP_KEY, SYSTEM_STEP_KEY

        wanted = set(keys)
        counts: dict[str, Counter[int]] = {}
        for path in find_run_files(self.info.paths.root):
            for row in read_history(path):
                step = row.get(SYSTEM_STEP_KEY, row.get(STEP_KEY))
                if not isinstance(step, int):
                    continue
                for key in wanted.intersection(row):
                    counts.setdefault(key, Counter())[step] += 1
        return {key: dict(counter) for key, counter in counts.items()}
