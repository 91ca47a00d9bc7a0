"""Keeping a run's local MLflow store whole when the run directory is moved or copied.

MLflow's file store writes the absolute location of each artifact folder into its
``meta.yaml`` files (``artifact_location`` of an experiment or logged model, ``artifact_uri``
of a run), and it cannot hold relative ones: ``FileStore`` passes every location through
``resolve_uri_if_local``, which anchors a relative path at the *reader's* working directory,
not at the store. So after ``runs/demo`` becomes ``runs/demo.<ts>`` the store still names
``runs/demo/mlruns/...``: ``list_artifacts`` finds nothing (or, for a copy, the original's
files). The fix is to rewrite those locations, and run.json's saved tracking URI, whenever
a run directory changes place:

- :func:`relocate_run_dir` after a move the code makes itself (the demo's move-aside);
- :func:`repair_moved_store` when a reader opens a run that was moved or copied by hand: the
  store's experiment folders say where the run used to be (``<old run>/mlruns/<id>``).

Only locations under the old run directory change; a store elsewhere (a server, a shared
``--mlflow-tracking-uri``) is left as it is. ``yaml`` comes with MLflow and is imported only
when a store exists.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["relocate_run_dir", "repair_moved_store"]

#: meta.yaml keys that hold an absolute artifact location.
LOCATION_KEYS = ("artifact_location", "artifact_uri")
MLRUNS = "mlruns"


def relocate_run_dir(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> int:
    """Point every location under ``old`` in ``new``'s MLflow store (and run.json) at ``new``.

    Call it after ``old`` was moved or copied to ``new``. Returns the number of files changed
    (0 when there is no store or nothing pointed at ``old``); running it twice changes nothing.
    """
    old_path, new_path = Path(os.path.abspath(old)), Path(os.path.abspath(new))
    changed: list[dict[str, Any]] = []
    store = new_path / MLRUNS
    if store.is_dir():
        rewritten = (_rewrite_meta(meta, old_path, new_path) for meta in sorted(store.rglob("meta.yaml")))
        changed = [data for data in rewritten if data is not None]
    _forget_cached_locations(str(data["run_id"]) for data in changed if data.get("run_id"))
    return len(changed) + _rewrite_run_file(new_path / "run.json", old_path, new_path)


def repair_moved_store(run_dir: str | os.PathLike[str]) -> int:
    """Repair ``run_dir``'s own ``mlruns/`` if it still names the directory it was moved or
    copied from; returns the number of files changed (0 for a run in place or without a store)."""
    run_dir = Path(os.path.abspath(run_dir))
    old = recorded_run_dir(run_dir)
    if old is None:
        return 0
    return relocate_run_dir(old, run_dir)


def recorded_run_dir(run_dir: Path) -> Path | None:
    """The run directory ``run_dir/mlruns`` was written in, when it is not ``run_dir`` itself.

    An experiment folder ``mlruns/<id>`` created by the default store has the artifact
    location ``<run dir>/mlruns/<id>``; any other location (chosen by the user) tells nothing.
    """
    store = run_dir / MLRUNS
    if not store.is_dir():
        return None
    for meta in sorted(store.glob("*/meta.yaml")):
        location = _local_path(str(_read_yaml(meta).get("artifact_location") or ""))
        if location is None or location.name != meta.parent.name or location.parent.name != MLRUNS:
            continue
        if location.parent.parent != run_dir and location.parent.parent.resolve() != run_dir.resolve():
            return location.parent.parent
    return None


def _rewrite_meta(meta: Path, old: Path, new: Path) -> dict[str, Any] | None:
    """The rewritten meta.yaml's data, or None when nothing in it pointed under ``old``."""
    data = _read_yaml(meta)
    moved = {key: _moved(data[key], old, new) for key in LOCATION_KEYS if isinstance(data.get(key), str)}
    moved = {key: value for key, value in moved.items() if value is not None}
    if not moved:
        return None
    import yaml

    data.update(moved)
    _write_atomic(meta, yaml.safe_dump(data, default_flow_style=False, allow_unicode=True, sort_keys=False))
    return data


def _forget_cached_locations(run_ids: Any) -> None:
    # MlflowClient caches each run's artifact repository (its old location) for the life of the
    # process; a run resumed or replayed in this same process must see the new place.
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    cache = getattr(utils, "_artifact_repos_cache", None)
    if isinstance(cache, dict):
        for run_id in run_ids:
            cache.pop(run_id, None)


def _rewrite_run_file(run_file: Path, old: Path, new: Path) -> int:
    # run.json keeps the MLflow tracking URI that resume, replay and `monitoring ui` reopen.
    try:
        state = json.loads(run_file.read_text(encoding="utf-8"))
        mlflow = state["backends"]["mlflow"]
        uri = mlflow["tracking_uri"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    moved = _moved(uri, old, new) if isinstance(uri, str) else None
    if moved is None:
        return 0
    mlflow["tracking_uri"] = moved
    _write_atomic(run_file, json.dumps(state, indent=2) + "\n")
    return 1


def _moved(location: str, old: Path, new: Path) -> str | None:
    """``location`` re-anchored from ``old`` to ``new`` in the same spelling, or None if not under ``old``."""
    path = _local_path(location)
    if path is None:
        return None
    try:
        rest = path.relative_to(old)
    except ValueError:
        return None
    target = new / rest
    return target.as_uri() if location.startswith("file:") else str(target)


def _local_path(location: str) -> Path | None:
    """The absolute local path of a ``file:`` URI or a plain path; None for anything else."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)) if parsed.netloc in ("", "localhost") else None
    if parsed.scheme == "" and os.path.isabs(location):
        return Path(location)
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # no MLflow here (it brings yaml): nothing can read the store anyway
        return {}

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, text: str) -> None:
    # A reader (the MLflow UI, a resumed run) never sees a half-written meta.yaml.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
