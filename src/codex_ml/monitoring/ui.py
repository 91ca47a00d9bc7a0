"""``codex-ml monitoring ui``: TensorBoard or the MLflow UI for one run, or optuna-dashboard for
one sweep (``sweeps/<sweep>`` holding ``optuna.db``), on 127.0.0.1.

The viewer runs as a child process in its own process group (so stopping it also stops
its workers), bound to 127.0.0.1 on a free port unless one is given. ``start_viewer``
returns once the URL answers HTTP. MLflow 3.13+ refuses file stores unless
``MLFLOW_ALLOW_FILE_STORE=true``; ``mlflow_utils.prepare_environment`` sets it. A run
whose MLflow store is a server (http URI) needs no new process: its URL is printed.
optuna-dashboard opens the sweep's study storage read-only, so it is safe beside a running sweep.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from codex_ml.errors import CodexMLError, MissingExtraError
from codex_ml.monitoring.runs import MonitoringInputError, read_json
from codex_ml.rundir.paths import RUN_FILE

START_TIMEOUT = 120.0
VIEWERS = ("tensorboard", "mlflow", "optuna")
OPTUNA_STORAGE = "optuna.db"  # the sweep's study storage, in the sweep directory (configs/hydra/sweeper)


class ViewerError(CodexMLError, RuntimeError):
    """A viewer process that exited or never answered."""


@dataclass
class Viewer:
    """A started viewer: its kind, URL and process (None when nothing was started)."""

    kind: str
    url: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def wait(self) -> None:
        """Block until the viewer exits (Ctrl-C raises KeyboardInterrupt here; see
        :func:`sigterm_as_interrupt` for SIGTERM)."""
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        """Terminate the viewer's process group; kill it if it does not stop in 10 s."""
        if self.process is not None:
            stop_process_group(self.process)


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group ``process`` leads (a server and its workers), then SIGKILL
    it if it has not exited within ``grace`` seconds. Safe on a process that already ended."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does.

    The viewer lives in its own process group and would outlive us, so whoever starts one
    wraps start, URL and wait in this block and stops the viewer in ``finally``: then a
    signal at any moment, even before the URL is printed, stops it.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def pick_viewer(tensorboard: bool, mlflow: bool, optuna: bool = False) -> str:
    """The one viewer the flags choose; several or none is an error saying what to pass."""
    chosen = [kind for kind, flag in zip(VIEWERS, (tensorboard, mlflow, optuna)) if flag]
    if len(chosen) != 1:
        raise MonitoringInputError("ui", "choose exactly one viewer: --tensorboard, --mlflow or --optuna")
    return chosen[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_viewer(run_dir: str | Path, kind: str, *, port: int = 0, host: str = "127.0.0.1",
                 timeout: float = START_TIMEOUT) -> Viewer:  # fmt: skip
    """Start the viewer for ``run_dir`` and return once its URL answers."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MonitoringInputError(run_dir, "not a run directory (give e.g. runs/demo)")
    port = port or free_port(host)
    if kind == "tensorboard":
        command, env, path = _tensorboard_command(run_dir, host, port), dict(os.environ), ""
    elif kind == "mlflow":
        started = _mlflow_command(run_dir, host, port)
        if isinstance(started, Viewer):
            return started
        command, env, path = started
    elif kind == "optuna":
        command, env, path = _optuna_command(run_dir, host, port), dict(os.environ), "/dashboard"
    else:
        raise MonitoringInputError("ui", f"unknown viewer {kind!r}; choose one of: {', '.join(VIEWERS)}")
    viewer = _spawn(kind, command, env, run_dir, f"http://{host}:{port}")
    try:
        wait_until_answers(viewer.url + "/", viewer.process, timeout, viewer.log_path, kind)
    except BaseException:  # it exited, a timeout, or Ctrl-C while it starts: leave nothing running
        viewer.stop()
        raise
    viewer.url += path
    return viewer


def _tensorboard_command(run_dir: Path, host: str, port: int) -> list[str]:
    logdir = run_dir / "tensorboard"
    if not logdir.is_dir() and any(run_dir.glob("*/tensorboard")):
        # A sweep directory (or a folder of runs): one TensorBoard over every run's event files, so the
        # HParams tab tables the trials side by side (docs/sweeps.md).
        logdir = run_dir
    elif not logdir.is_dir():
        raise MonitoringInputError(run_dir, "has no tensorboard/ folder; run with --enable-tensorboard, or "
                                            "replay: codex-ml monitoring export RUN --to tensorboard")  # fmt: skip
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port)]


def _mlflow_command(run_dir: Path, host: str, port: int) -> tuple[list[str], dict[str, str], str] | Viewer:
    from codex_ml.backends import mlflow_utils as mu
    from codex_ml.tracking.relocate import repair_moved_store

    repair_moved_store(run_dir)  # a run moved or copied by hand: point its store and run.json at this place
    saved = read_json(run_dir / RUN_FILE).get("backends", {}).get("mlflow", {})
    uri = saved.get("tracking_uri") or (mu.default_tracking_uri(run_dir) if (run_dir / "mlruns").is_dir() else None)
    if uri is None:
        raise MonitoringInputError(run_dir, "has no MLflow store; run with --mlflow-enable, or replay: "
                                            "codex-ml monitoring export RUN --to mlflow")  # fmt: skip
    if uri.startswith(("http://", "https://")):
        return Viewer("mlflow", uri.rstrip("/") + _run_fragment(saved, run_dir))  # the server is already up
    mu.prepare_environment(uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
               "--workers", "1"]  # fmt: skip
    return command, dict(os.environ), _run_fragment(saved, run_dir)


def _optuna_command(sweep_dir: Path, host: str, port: int) -> list[str]:
    if not (sweep_dir / OPTUNA_STORAGE).is_file():
        raise MonitoringInputError(sweep_dir, f"has no {OPTUNA_STORAGE}; give a sweep directory made by "
                                              "hydra/sweeper=optuna (e.g. sweeps/<sweep>)")  # fmt: skip
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise MissingExtraError("monitoring ui --optuna", "optuna-dashboard", "sweep")
    # Read-only (SQLite URI mode=ro): the dashboard then cannot change a study a sweep is writing (its
    # delete/note/tell buttons fail). Relative to the sweep directory, the viewer's cwd, so no path escaping.
    storage = f"sqlite:///file:{OPTUNA_STORAGE}?mode=ro&uri=true"
    # wsgiref, not the gunicorn it picks when installed: one process that stops at once, and no
    # gunicorn control socket left in ~/.gunicorn. The code is the package's console script's.
    return [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; sys.exit(main())",
            storage, "--host", host, "--port", str(port), "--server", "wsgiref"]  # fmt: skip


def _run_fragment(saved: dict[str, Any], run_dir: Path) -> str:
    # The MLflow UI route of the run; for a file store the experiment id is its folder name.
    run_id = saved.get("run_id")
    if not run_id:
        return "/"
    for match in (run_dir / "mlruns").glob(f"*/{run_id}"):
        return f"/#/experiments/{match.parent.name}/runs/{run_id}"
    return "/"


def _spawn(kind: str, command: list[str], env: dict[str, str], cwd: Path, url: str) -> Viewer:
    log_path = Path(tempfile.mkstemp(prefix=f"codex-ml-{kind}-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    return Viewer(kind, url, process, log_path)


def wait_until_answers(url: str, process: subprocess.Popen, timeout: float, log_path: Path | None = None,
                       name: str = "server") -> None:  # fmt: skip
    """Return once ``url`` answers HTTP 200. Raise :class:`ViewerError`, with the end of
    ``log_path``, if ``process`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not answers(url):
        if process.poll() is not None:
            raise ViewerError(f"{name} exited with status {process.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ViewerError(f"{name} did not answer at {url} within {timeout:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.25)


def answers(url: str) -> bool:
    """True when ``url`` returns HTTP 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def log_tail(path: Path | None, size: int = 3000) -> str:
    """The last ``size`` bytes of a server's log, as text ("" when there is none)."""
    if path is None or not path.exists():
        return ""
    return path.read_bytes()[-size:].decode("utf-8", "replace")
