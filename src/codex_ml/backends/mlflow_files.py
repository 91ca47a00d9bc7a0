"""Metrics into MLflow's local file store with one append per metric file per batch.

MLflow's ``FileStore.log_batch`` stores each point on its own: for every point it lists the
store's experiments (twice) to find the run's folder, then opens, appends one line to and
closes that metric's file. That is ~40 µs a point here, so 200,000 points cost ~8 s of one
core, which close() had to wait for after a fast burst of logging (docs/benchmarks.md,
"Start-up and close"). The file store's format is plain text: ``metrics/<key>`` (a key with
``/`` is nested folders) holds one ``"<timestamp ms> <value> <step>\\n"`` line per point, read
by ``get_metric_history``, ``get_run``, ``search_runs`` and the UI. This writer produces the
same lines as ``log_batch`` would, but finds each metric's file once (through the store's own
path function, so the layout is MLflow's), checks once per batch that the run is still active,
and appends all of a metric's lines in one write.

It is used only when the client's store is MLflow's ``FileStore`` with the internals it needs
(``_get_run_info``, ``_get_metric_path``); any other store, or an MLflow without them, keeps
``log_batch``. A write that fails half-way is cut back to the file's previous end, so a retry
never leaves a torn line in the middle of a metric file.
"""

from __future__ import annotations

import os
from typing import Any

#: FileStore methods this writer relies on (present from MLflow 1.x through 3.x).
NEEDED = ("_get_run_info", "_get_metric_path")


class FileStoreMetrics:
    """Appends metric lines for one run of a local file store."""

    def __init__(self, store: Any, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._experiment_id = store._get_run_info(run_id).experiment_id
        #: metric name -> its file (found once: finding it lists the store's folders).
        self._paths: dict[str, str] = {}

    @classmethod
    def open(cls, client: Any, run_id: str) -> FileStoreMetrics | None:
        """The writer for ``run_id`` when ``client`` talks to a file store this module can write; else None."""
        try:
            from mlflow.store.tracking.file_store import FileStore

            store = client._tracking_client.store
        except (ImportError, AttributeError):
            return None
        if not isinstance(store, FileStore) or not all(hasattr(store, name) for name in NEEDED):
            return None
        return cls(store, run_id)

    def check_active(self) -> None:
        """Raise as ``log_batch`` would when the run was ended or deleted meanwhile."""
        from mlflow.entities.run_info import check_run_is_active

        check_run_is_active(self._store._get_run_info(self._run_id))

    def path(self, name: str) -> str:
        """The metric file of ``name`` (validated by the store as ``log_batch`` validates it); folders made."""
        path = self._paths.get(name)
        if path is None:
            path = self._store._get_metric_path(self._experiment_id, self._run_id, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._paths[name] = path
        return path

    def append(self, name: str, lines: list[str]) -> None:
        """Append ``lines`` to metric ``name``'s file in one write; on failure, cut back to where it was."""
        data = memoryview("".join(lines).encode("utf-8"))
        fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # as open("a"): the umask decides
        try:
            size = os.fstat(fd).st_size
            try:
                while data:  # unbuffered: a short write is seen here, not in a later flush
                    data = data[os.write(fd, data) :]
            except BaseException:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def metric_line(wall_time: float, value: Any, step: int) -> str:
    """One point as MLflow's file store writes it (``Metric(key, float(value), ms, step)``)."""
    return f"{int(wall_time * 1000)} {float(value)} {step}\n"
