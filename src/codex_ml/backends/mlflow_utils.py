"""MLflow helpers: tracking URIs, the file-store opt-in, limits, and fluent shortcuts.

MLflow 3.13+ refuses plain file stores unless ``MLFLOW_ALLOW_FILE_STORE=true``; codex_ml
keeps ``runs/<run>/mlruns`` as its default local store, so it sets that variable for the
user whenever the URI it uses is a file store. ``mlflow`` is imported only inside functions.

A URI with credentials (``http://user:password@host``) is used without them: they stay in this
process's memory (credentials.py) and reach MLflow through the environment variables it reads,
so neither run.json nor MLflow's own "View run at" line ever shows them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from codex_ml import env
from codex_ml.secrets.credentials import apply_mlflow_credentials, take_credentials
from codex_ml.backends.names import mlflow_name
from codex_ml.rundir.params import flatten_params

MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100

# A dead tracking server must not keep a worker retrying for minutes inside MLflow.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def is_file_store(uri: str) -> bool:
    """True for plain paths and ``file:`` URIs (MLflow's file store)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def default_tracking_uri(run_dir: str | os.PathLike[str]) -> str:
    """``file:`` URI of the run's local store, ``<run_dir>/mlruns``."""
    return (Path(run_dir).resolve() / "mlruns").as_uri()


def resolve_tracking_uri(uri: str | None, run_dir: str | os.PathLike[str]) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else the run's local store.

    Relative file paths become absolute ``file:`` URIs so a later ``cd`` cannot move them.
    Credentials in the URI are taken out and kept in memory (see the module doc).
    """
    chosen = take_credentials(uri or os.environ.get(env.MLFLOW_TRACKING_URI)) or default_tracking_uri(run_dir)
    if urlparse(chosen).scheme == "":
        chosen = Path(chosen).resolve().as_uri()
    return chosen


def prepare_environment(uri: str) -> None:
    """Opt into the file store when ``uri`` is one, bound MLflow's HTTP retries, hand it ``uri``'s credentials."""
    apply_mlflow_credentials(uri)
    if is_file_store(uri):
        os.environ.setdefault(env.MLFLOW_ALLOW_FILE_STORE, "true")
    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def repair_torn_metric_files(uri: str, run_id: str | None = None) -> int:
    """Cut what a crash left half-written in a local file store's metric files; returns files fixed.

    MLflow's file store appends ``"<time> <value> <step>\\n"`` per point. A SIGKILL between
    creating a metric file and writing it, or in the middle of a line, leaves a file MLflow
    refuses as a whole ("malformed"), which would stop back-fill and the resumed sink. Only
    called where this process holds the run (resume, replay): a live writer is never cut.
    The points cut off are still in the NDJSON log, so back-fill sends them again. With
    ``run_id`` only that MLflow run's files are looked at (a sweep's store is shared by trials
    that may be writing at this moment).
    """
    if not is_file_store(uri):
        return 0
    root = Path(unquote(urlparse(uri).path)) if urlparse(uri).scheme == "file" else Path(uri)
    fixed = 0
    for path in root.glob(f"*/{run_id or '*'}/metrics/**/*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if data.endswith(b"\n"):
            continue
        keep = data[: data.rfind(b"\n") + 1]
        if keep:
            path.write_bytes(keep)
        else:
            path.unlink()  # an empty metric file: MLflow says "No data found"
        fixed += 1
    return fixed


def clip_value(value: Any, limit: int) -> tuple[str, bool]:
    """``str(value)`` cut to ``limit`` characters; the flag says whether it was cut."""
    text = value if isinstance(value, str) else str(value)
    return (text[:limit], True) if len(text) > limit else (text, False)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """Split ``items`` into lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- fluent shortcuts (the API earlier docs promised) -------------------------------
def start_run(
    run_name: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    run_dir: str | os.PathLike[str] = ".",
    **kwargs: Any,
) -> Any:
    """``mlflow.start_run`` after resolving the URI (file stores allowed) and experiment."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri, run_dir)
    prepare_environment(uri)
    mlflow.set_tracking_uri(uri)
    if experiment:
        mlflow.set_experiment(experiment)
    return mlflow.start_run(run_name=run_name, **kwargs)


def log_params(params: Any) -> dict[str, str]:
    """Flatten, map keys and clip values to MLflow's limits; returns what was logged."""
    import mlflow

    logged = {mlflow_name(k): clip_value(v, MAX_PARAM_VALUE)[0] for k, v in flatten_params(params).items()}
    for part in chunks(list(logged.items()), MAX_PARAMS_PER_BATCH):
        mlflow.log_params(dict(part))
    return logged


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """``mlflow.log_metrics`` with keys mapped to legal MLflow names."""
    import mlflow

    mlflow.log_metrics({mlflow_name(k): float(v) for k, v in metrics.items()}, step=step)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """``mlflow.log_artifacts`` for a directory."""
    import mlflow

    mlflow.log_artifacts(str(local_dir), artifact_path)
