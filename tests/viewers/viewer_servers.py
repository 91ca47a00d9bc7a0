"""Local servers for the viewer tests: free ports, start/wait/stop in a process group, bound addresses."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_ml.monitoring.ui import ViewerError, free_port, stop_process_group, wait_until_answers

VENV_BIN = Path(sys.executable).parent
# Generous: the servers start on a loaded 2-core CI machine; a healthy start needs a fraction of it.
SERVER_TIMEOUT = 90.0


@contextlib.contextmanager
def serve(name: str, command: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None
          ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start a server in its own process group, wait until ``ready_url`` answers 200, stop it on exit."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)  # fmt: skip
    try:
        try:
            wait_until_answers(ready_url, process, SERVER_TIMEOUT, log_path, name)
        except ViewerError as exc:
            pytest.fail(str(exc))
        yield process
    finally:
        stop_process_group(process)


@contextlib.contextmanager
def optuna_dashboard(storage_url: str, log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The documented ``optuna-dashboard STORAGE --host 127.0.0.1 --port PORT`` on a free port: (base URL, process).

    Ready once ``/api/studies`` answers: that route reads the storage, so the server is up *and*
    can open the study database. optuna-dashboard serves with gunicorn when it is installed, and
    gunicorn 25+ opens a control socket in ``$XDG_RUNTIME_DIR`` (else ``~/.gunicorn``): point it
    next to the log so a test leaves nothing in the home directory.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(VENV_BIN / "optuna-dashboard"), storage_url, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(log_path.parent)}
    with serve("optuna-dashboard", command, f"{base}/api/studies", log_path, env=env) as process:
        yield base, process


def listening_addresses(process: subprocess.Popen[bytes]) -> set[str]:
    """The IP addresses the process and its children listen on (TCP)."""
    import psutil

    parent = psutil.Process(process.pid)
    addresses = set()
    for proc in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            addresses.update(c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
    return addresses
