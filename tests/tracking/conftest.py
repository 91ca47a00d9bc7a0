"""Fixtures for the tracking tests: a real MLflow server, and a clean backend environment.

Every test runs with ``MLFLOW_TRACKING_URI`` removed and W&B forced offline and silent,
so nothing on the developer's machine (or the network) leaks into a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from codex_ml.monitoring.ui import ViewerError, free_port, stop_process_group, wait_until_answers

SERVER_START_TIMEOUT = 90.0


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can kill, freeze and start again
    (same port, same sqlite store)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        """Start the server and wait until it answers /health."""
        self.process = _spawn_server(self.root, self.port)
        _wait_healthy(self.uri, self.process, self.root / "server.log")
        return self

    def kill(self) -> None:
        """SIGKILL the server and its workers (a crash)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP (True) or SIGCONT (False) the whole server: it accepts connections, never answers."""
        os.killpg(self.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        """Stop it for good (teardown)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            stop_process_group(self.process)


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[[], MlflowServer]]:
    """Make function-scoped MLflow servers that tests may kill or freeze; all stopped after."""
    servers: list[MlflowServer] = []

    def make() -> MlflowServer:
        root = tmp_path / f"mlflow_server{len(servers)}"
        root.mkdir()
        servers.append(MlflowServer(root))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def _spawn_server(root: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(root / "server.log", "ab") as log:
        return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(uri: str, process: subprocess.Popen, log_path: Path) -> None:
    try:
        wait_until_answers(f"{uri}/health", process, SERVER_START_TIMEOUT, log_path, "mlflow server")
    except ViewerError as exc:
        stop_process_group(process)
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts); yields its URI."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield server.start().uri
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _clean_backend_env(clean_backend_env: None) -> None:
    """Every tracking test: the suite's clean backend environment (tests/conftest.py)."""
