"""The run's own files for a backend whose users may not have the run directory (MLflow on a server).

A teammate who opens a run on a shared MLflow server sees its metrics, but not the run
directory on the trainer's disk. So once close() has written summary.json, a sink that asks
for them (``wants_run_files`` true; the MLflow sink on an http(s) tracking URI) gets the config
(params.json), the final summary (summary.json) and the curves (curves.png, drawn from
metrics.ndjson by the code of ``codex-ml monitoring plot``) through ``upload_run_files(files,
stop)``; for MLflow they go through the server's artifact proxy to ``codex_ml/`` in the run.

This runs after the sinks have closed, on a thread, bounded like the sinks are: until the close
deadline plus ``STOP_GRACE``. Past it the sink is told to stop between two uploads and the run
says so once; a failure is a warning too. The files stay in the run directory either way.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from codex_ml.rundir.paths import RunPaths
from codex_ml.tracking.reporting import Reporter
from codex_ml.tracking.services import RUN_PLOT, service
from codex_ml.tracking.worker import STOP_GRACE, SinkWorker

#: The plot's file name (what the artifact is called in the backend).
PLOT_NAME = "curves.png"


def takers(workers: list[SinkWorker]) -> list[SinkWorker]:
    """Workers whose sink wants the run files and is still in a state to take them."""
    return [w for w in workers
            if getattr(w.sink, "wants_run_files", False) and not w.stats.disabled and not w.abandoned]  # fmt: skip


def upload_run_files(paths: RunPaths, workers: list[SinkWorker], give_up_at: float, reporter: Reporter) -> None:
    """Hand params.json, summary.json and a plot of the curves to every sink that wants them, within the deadline."""
    wanting = takers(workers)
    if not wanting:
        return
    stop = threading.Event()
    errors: list[tuple[str, str]] = []
    thread = threading.Thread(target=_upload, args=(paths, wanting, stop, errors), name="codex-run-files", daemon=True)
    thread.start()
    thread.join(max(give_up_at - time.time(), 0.0) + STOP_GRACE)
    if thread.is_alive():
        stop.set()  # stop between two uploads; the one in flight may still land
        errors.append(("run", f"run files (config, summary, plot) not all uploaded before the close timeout; "
                              f"they are in {paths.root}"))  # fmt: skip
    for sink, message in list(errors):
        reporter.warn(sink, message)


def _upload(paths: RunPaths, wanting: list[SinkWorker], stop: threading.Event, errors: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory(prefix="codex-ml-run-files-") as folder:
        files = {name: path for name, path in (("params.json", paths.params), ("summary.json", paths.summary))
                 if path.is_file()}  # fmt: skip
        plot = _draw(paths, Path(folder) / PLOT_NAME, errors)
        if plot is not None:
            files[PLOT_NAME] = plot
        for worker in wanting:
            if stop.is_set():
                return
            try:
                worker.sink.upload_run_files(files, stop)
            except Exception as exc:  # noqa: BLE001 - closing files are a courtesy, never a failure of the run
                errors.append((worker.sink.name, f"run files (config, summary, plot) not uploaded: "
                                                 f"{type(exc).__name__}: {exc}; they are in {paths.root}"))


def _draw(paths: RunPaths, output: Path, errors: list[tuple[str, str]]) -> Path | None:
    """The curves of metrics.ndjson as a PNG (None, with the reason kept, when they cannot be drawn)."""
    if not paths.metrics.is_file() or paths.metrics.stat().st_size == 0:
        return None
    try:
        service(RUN_PLOT)([paths.root], output)
    except Exception as exc:  # noqa: BLE001 - e.g. matplotlib missing (the export extra): upload the rest
        errors.append(("run", f"{PLOT_NAME} not drawn for the backends ({type(exc).__name__}: {exc}); "
                              "params.json and summary.json are uploaded"))
        return None
    return output if output.is_file() else None
