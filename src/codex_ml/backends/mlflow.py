"""MLflow backend: the sink, its history reader for back-fill and replay, and its view line.
Needs the ``mlflow`` extra.

The sink sends metrics in ``log_batch`` calls and params within MLflow's limits. It works with file:, sqlite: and http(s):// tracking URIs through ``MlflowClient`` (no global
fluent state, so several runs can coexist in one process). A resumed run reopens the same
MLflow run id. MLflow has no histogram type: histograms stay in the NDJSON log and
TensorBoard/W&B. A health event sets the run tag ``codex.health.last`` (its message) and is
stored as text like on every sink. Credentials in the tracking URI never reach run.json (see mlflow_utils).
A trial of a sweep (``TrackingConfig.sweep``) is nested under the sweep's parent run (see mlflow_sweep).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from codex_ml.backends import NOT_STARTED, quote
from codex_ml.backends import mlflow_sweep as ms
from codex_ml.backends.mlflow_files import FileStoreMetrics, metric_line
from codex_ml.backends import mlflow_utils as mu
from codex_ml.errors import CodexMLError, MissingExtraError
from codex_ml.secrets.credentials import MLFLOW_ENV, credentials_for, split_credentials
from codex_ml.backends.names import KeyMapper, mlflow_name
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.run_files import read_run_json
from codex_ml.rundir.sweep_dir import sweep_lock
from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink


#: Run tag holding the message of the run's latest health event.
HEALTH_TAG = "codex.health.last"
#: Artifact folder of the run's own files (config, summary, plot) on a tracking server.
RUN_FILES_DIR = "codex_ml"


class MlflowAuthError(CodexMLError, RuntimeError):
    """The tracking server refused the request for want of (valid) credentials."""

    #: Retrying with the same credentials cannot help: the worker reports it once and disables the sink.
    retryable = False

    def __init__(self, uri: str, had_credentials: bool) -> None:
        what = "refused the credentials given" if had_credentials else "wants credentials"
        super().__init__(
            f"the MLflow server at {uri} {what}. codex_ml never stores them (a resumed run needs them again): "
            "put them in the URI (--mlflow-tracking-uri http://USER:PASSWORD@host:port) or in "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )


class MlflowSink(Sink):
    """One MLflow run per codex_ml run."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str = "codex_ml", sweep: str | None = None,
                 trial: str | None = None) -> None:
        self._requested_uri = tracking_uri
        self._experiment = experiment
        self._sweep = sweep
        self._trial = trial
        self.tracking_uri: str | None = None
        self.run_id: str | None = None
        #: The sweep's parent run (a trial of a sweep only) and the experiment both live in.
        self.parent_run_id: str | None = None
        self._experiment_id: str | None = None
        self._sweep_dir: Path | None = None
        self._parent_opened = False
        self._client: Any = None
        #: Metric files of a local file store, written directly (mlflow_files.py); None: log_batch.
        self._files: FileStoreMetrics | None = None
        self._entities: Any = None
        self._params: dict[str, str] = {}
        self._warned: set[str] = set()
        self._progress: tuple[int, int] = (0, 0)
        self._warn = lambda message: None
        self._keys = KeyMapper(mlflow_name, self._keys_collide)
        self._saved_renames = 0
        self._remember = lambda values: None

    @classmethod
    def from_config(cls, config: Any) -> MlflowSink:
        """The sink a TrackingConfig asks for: its tracking URI, experiment, and sweep and trial if any."""
        return cls(config.mlflow_tracking_uri, config.mlflow_experiment, config.sweep, config.trial)

    def start(self, run: RunInfo) -> None:
        """Connect, then reopen the run saved in run.json or create a new one."""
        from mlflow import entities
        from mlflow.tracking import MlflowClient

        self._entities = entities
        self._warn = lambda message: run.warn(self.name, message)
        self._sweep_dir = ms.store_dir(run.paths.root, self._sweep)
        self.tracking_uri = mu.resolve_tracking_uri(self._requested_uri, self._sweep_dir)
        mu.prepare_environment(self.tracking_uri)
        if run.resumed:  # a crash may have left a metric file half-written (this process holds the run)
            _repair(self.tracking_uri, run.backends.get(self.name, {}), self._sweep)
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        try:
            self._open(run)
        except Exception as exc:
            if re.search(r"\b40[13]\b", str(exc)):
                given = credentials_for(self.tracking_uri) is not None or any(os.environ.get(n) for n in MLFLOW_ENV)
                raise MlflowAuthError(self.tracking_uri, given) from exc
            raise

    def _open(self, run: RunInfo) -> None:
        saved = run.backends.get(self.name, {})
        self._remember = lambda values: run.remember(self.name, values)
        # run.json of an older version may hold the URI with credentials: compare without them.
        same_store = split_credentials(saved.get("tracking_uri") or "")[0] == self.tracking_uri
        known = saved.get("key_map", {}) if same_store else {}
        self._keys = KeyMapper(mlflow_name, self._keys_collide, path_like=mu.is_file_store(self.tracking_uri), known=known)
        if saved.get("run_id") and same_store:
            self.run_id = self._reopen(saved["run_id"])
        if self.run_id is None:
            self.run_id = self._create(run)
        found = self._client.get_run(self.run_id)
        experiment_id = self._experiment_id = found.info.experiment_id
        self.parent_run_id = found.data.tags.get(ms.PARENT_RUN_ID_TAG) if self._sweep else None
        self._files = FileStoreMetrics.open(self._client, self.run_id)
        if self.parent_run_id and not self._parent_opened:  # a reopened trial
            ms.resume_parent(self._client, self.parent_run_id, self._sweep_dir)
        run.remember(self.name, {"run_id": self.run_id, "tracking_uri": self.tracking_uri,
                                 "experiment": self._experiment, "experiment_id": experiment_id,
                                 **({"parent_run_id": self.parent_run_id} if self.parent_run_id else {})})  # fmt: skip

    def _reopen(self, run_id: str) -> str | None:
        try:
            existing = self._client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a missing run just means we create a new one
            return None
        self._params = dict(existing.data.params)
        self._client.update_run(run_id, status="RUNNING")
        return run_id

    def _create(self, run: RunInfo) -> str:
        if not self._sweep:
            return self._create_in(ms.experiment_id_for(self._client, self._experiment), run, {})
        # Under the sweep's lock, the child included: see mlflow_sweep.open_parent.
        with sweep_lock(self._sweep_dir):
            experiment_id, parent = ms.open_parent(self._client, self._experiment, self._sweep, self._sweep_dir,
                                                   self.tracking_uri)  # fmt: skip
            self._parent_opened = True
            return self._create_in(experiment_id, run, ms.child_tags(self._sweep, self._trial, parent))

    def _create_in(self, experiment_id: str, run: RunInfo, extra_tags: dict[str, str]) -> str:
        if run.resumed:
            # A crash before run.json recorded the MLflow run (or a replay that created it):
            # find it by our run id tag rather than start a second MLflow run for one codex_ml run.
            found = self._client.search_runs([experiment_id], filter_string=f"tags.`codex_ml.run_id` = '{run.run_id}'",
                                             max_results=1, order_by=["attributes.start_time ASC"])  # fmt: skip
            if found:
                return self._reopen(found[0].info.run_id) or found[0].info.run_id
        tags = {"codex_ml.run_id": run.run_id, "codex_ml.run_dir": str(run.paths.root), **extra_tags}
        return self._client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """All points in ``log_batch`` calls of at most 1,000 metrics; into a local file store,
        one append per metric instead (mlflow_files.py: the same lines, ~40x faster)."""
        if self._files is not None:
            self._write_files(points)
            return
        metric_cls, key = self._entities.Metric, self._keys
        metrics = [
            metric_cls(key(name), float(value), int(wall_time * 1000), step)
            for step, wall_time, values in points
            for name, value in values.items()
        ]
        self._save_key_map()
        self._send_in_chunks(id(points), metrics, "metrics", mu.MAX_METRICS_PER_BATCH)

    def _write_files(self, points: list[MetricPoint]) -> None:
        files, key = self._files, self._keys
        lines: dict[str, list[str]] = {}
        for step, wall_time, values in points:
            for name, value in values.items():
                lines.setdefault(key(name), []).append(metric_line(wall_time, value, step))
        self._save_key_map()
        files.check_active()
        # One "chunk" per metric file, so a retry after a failed append skips the files already written.
        self._send_in_chunks(id(points), list(lines.items()), "", 1, send=lambda part: files.append(*part[0]))

    def _keys_collide(self, message: str) -> None:
        self._warn_once("collision", message)

    def _save_key_map(self) -> None:
        # Renamed keys go to run.json so that a resume maps every key to the same name.
        if len(self._keys.renamed) != self._saved_renames:
            self._saved_renames = len(self._keys.renamed)
            self._remember({"key_map": dict(self._keys.renamed)})

    def _send_in_chunks(self, batch_id: int, items: list[Any], field: str, size: int, send: Any = None) -> None:
        # After a failure the worker retries with the same list: skip chunks already sent,
        # so a retry never duplicates points.
        done = self._progress[1] if self._progress[0] == batch_id else 0
        send = send or (lambda part: self._client.log_batch(self.run_id, **{field: part}))
        for index, part in enumerate(mu.chunks(items, size)):
            if index < done:
                continue
            send(part)
            self._progress = (batch_id, index + 1)
        self._progress = (0, 0)

    def write_params(self, params: dict[str, Any]) -> None:
        """New params only; MLflow params are immutable, so a changed value is kept as it was."""
        fresh = []
        for raw_key, raw_value in params.items():
            key = self._keys(raw_key)
            value, clipped = mu.clip_value(raw_value, mu.MAX_PARAM_VALUE)
            if clipped:
                self._warn_once("clip", f"param values longer than {mu.MAX_PARAM_VALUE} characters are cut (first: {raw_key!r})")
            if key in self._params:
                if self._params[key] != value:
                    self._warn_once("immutable", f"param {raw_key!r} changed; MLflow params are immutable, keeping {self._params[key]!r}")
                continue
            fresh.append(self._entities.Param(key, value))
        self._save_key_map()
        self._send_in_chunks(id(params), fresh, "params", mu.MAX_PARAMS_PER_BATCH)
        # Only after MLflow accepted them: a failed batch is resent whole by the retry.
        self._params.update((p.key, p.value) for p in fresh)

    def write_tags(self, tags: dict[str, str]) -> None:
        """Tags via ``log_batch``, values clipped to MLflow's limit."""
        run_tags = [self._entities.RunTag(self._keys(k), mu.clip_value(v, mu.MAX_TAG_VALUE)[0]) for k, v in tags.items()]
        self._send_in_chunks(id(tags), run_tags, "tags", mu.MAX_PARAMS_PER_BATCH)

    def write_text(self, step: int, wall_time: float, name: str, text: str) -> None:
        """Text as an artifact ``text/<name>/step_<step>.txt``."""
        safe = re.sub(r"[^\w.\-/]", "_", mlflow_name(name), flags=re.ASCII)
        self._client.log_text(self.run_id, text, f"text/{safe}/step_{step:08d}.txt")

    def write_artifact(self, path: Path, name: str) -> None:
        """Upload a file from the run's artifacts/ folder."""
        self._client.log_artifact(self.run_id, str(path))

    @property
    def wants_run_files(self) -> bool:
        """True on a tracking server (http/https): its users may not have the run directory, so close()
        hands this sink the config, summary and plot (tracking/closing_upload.py)."""
        return self.run_id is not None and urlparse(self.tracking_uri or "").scheme in ("http", "https")

    def upload_run_files(self, files: dict[str, Path], stop: Any) -> None:
        """Upload each file to ``codex_ml/<name>`` of the run (through the server's artifact proxy when it
        serves artifacts); stop between two files once ``stop`` is set. A re-upload replaces the file."""
        for path in files.values():
            if stop.is_set():
                return
            self._client.log_artifact(self.run_id, str(path), RUN_FILES_DIR)

    def write_event(self, event: dict[str, Any]) -> None:
        """Tag ``codex.health.last`` with the event's message (MLflow has no alerts; a tag shows on the
        run's page and in the runs table), then the text artifact every sink writes.

        Both calls are idempotent, so the worker's retry of a failed call repeats nothing.
        """
        self._client.set_tag(self.run_id, HEALTH_TAG, mu.clip_value(event["message"], mu.MAX_TAG_VALUE)[0])
        super().write_event(event)

    def close(self, status: str) -> None:
        """Mark the MLflow run FINISHED, FAILED or KILLED; the last trial of a sweep to end also ends its parent."""
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id, status)
            if self.parent_run_id and self._sweep_dir is not None:
                ms.finish_parent_if_idle(self._client, self._experiment_id, self.parent_run_id, self._sweep_dir)

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            self._warn(message)


def _repair(uri: str, saved: dict[str, Any], sweep: str | None) -> None:
    """Cut torn metric files after a crash; in a sweep's shared store only those of this trial's own run
    (other trials may be writing theirs now), and none while its id is unknown."""
    own = saved.get("run_id") if split_credentials(saved.get("tracking_uri") or "")[0] == uri else None
    if sweep and own is None:
        return
    mu.repair_torn_metric_files(uri, own if sweep else None)


class History:
    """One MLflow run, found by run.json or by its ``codex_ml.run_id`` tag."""

    def __init__(self, info: RunInfo, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise MissingExtraError("replay into MLflow", "mlflow", "mlflow") from exc

        saved = info.backends.get("mlflow", {})
        recorded = read_run_json(info.paths)  # a trial of a sweep: start_run recorded sweep and trial
        sweep, trial = recorded.get("sweep"), recorded.get("trial")
        self.uri = mu.resolve_tracking_uri(tracking_uri or saved.get("tracking_uri"), ms.store_dir(info.paths.root, sweep))
        mu.prepare_environment(self.uri)
        _repair(self.uri, saved, sweep)  # MLflow refuses a whole metric whose file a crash cut
        self.experiment = experiment or saved.get("experiment") or "codex_ml"
        self.client = MlflowClient(tracking_uri=self.uri)
        same_store = saved.get("tracking_uri") == self.uri
        key_map = saved.get("key_map", {}) if same_store else {}
        # The same rule, known names and first-appearance order as the sink: same names.
        self.name = KeyMapper(mlflow_name, lambda message: None, path_like=mu.is_file_store(self.uri), known=key_map)
        self.run_id = self._find_run(saved.get("run_id") if same_store else None, info.run_id)
        state = {"run_id": self.run_id, "tracking_uri": self.uri, "experiment": self.experiment, "key_map": key_map}
        self.info = replace(info, backends={**info.backends, "mlflow": state})
        self.sink = MlflowSink(self.uri, self.experiment, sweep, trial)
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

    def existing(self, keys: list[str]) -> dict[str, dict[int, int]]:
        """Metric history of the run, per mapped name and step."""
        if self.run_id is None:
            for key in keys:
                self.name(key)  # claim names in the sink's order
            return {}
        out: dict[str, dict[int, int]] = {}
        for key in keys:
            name = self.name(key)
            history = self.client.get_metric_history(self.run_id, name)
            if history:
                out[name] = dict(Counter(m.step for m in history))
        return out


def view_line(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """The MLflow line of a run's outputs."""
    return f"  MLflow:       {mlflow_view_command(paths, saved)}"


def mlflow_view_command(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """How to open this run in MLflow: its page on a server, or ``mlflow ui`` on a local store that exists."""
    uri = (saved or {}).get("tracking_uri")
    if not uri:
        return NOT_STARTED
    uri = split_credentials(uri)[0]  # a run.json from an older version may still hold them
    if uri.startswith(("http://", "https://")):
        page = uri.rstrip("/")
        if saved.get("experiment_id") and saved.get("run_id"):
            page += f"/#/experiments/{saved['experiment_id']}/runs/{saved['run_id']}"
        return f"open {page} in a browser"
    store = _local_store(uri)
    if store is None:
        return f"mlflow ui --backend-store-uri {quote(uri)} --host 127.0.0.1 --port 5000"
    if not store.exists():
        return f"nothing at {store} (the store was moved or deleted)"
    prefix = "MLFLOW_ALLOW_FILE_STORE=true " if urlparse(uri).scheme in ("", "file") else ""
    return f"{prefix}mlflow ui --backend-store-uri {quote(uri if prefix == '' else store)} --host 127.0.0.1 --port 5000"


def _local_store(uri: str) -> Path | None:
    """The file or folder a file:/sqlite: URI keeps its data in (None for other schemes)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "sqlite":
        return Path(unquote(uri.split(":///", 1)[-1])) if ":///" in uri else None
    return None
