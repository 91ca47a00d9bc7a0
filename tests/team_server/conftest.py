"""A real team server for these tests: PostgreSQL 15 and ``mlflow server`` started through
scripts/mlflow_server.sh (the script users run), on free 127.0.0.1 ports, in a fresh data dir.

One server serves the whole directory (its first start, initdb and MLflow's schema migrations,
is most of the cost); tests that kill the server or restart PostgreSQL leave it running again.
It is always stopped at the end, and its data dir deleted, even when a test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from team_helpers import SCRIPT

from codex_ml.monitoring.ui import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class TeamServer:
    """The server the script started, and what the outage tests do to it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.pg_port = free_port()
        self.uri = ""

    def script(self, command: str, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/mlflow_server.sh COMMAND --data-dir DIR EXTRA``; fail the test unless it exits 0."""
        done = subprocess.run(["bash", str(SCRIPT), command, "--data-dir", str(self.data_dir), *extra],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        assert done.returncode == 0, f"{command}: {done.stderr}\n{self.log_tail()}"
        return done

    def start(self) -> TeamServer:
        """Start (or make sure of) PostgreSQL and the server; the URI is the script's stdout."""
        out = self.script("start", "--port", str(self.port), "--pg-port", str(self.pg_port), "--workers", "1")
        self.uri = out.stdout.strip()
        assert self.uri == f"http://127.0.0.1:{self.port}", out.stdout
        return self

    def kill_server(self) -> None:
        """SIGKILL the mlflow server's whole process group (a crash); PostgreSQL stays up."""
        pid = int((self.data_dir / "mlflow.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart_postgres(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE`` of the server's cluster, as the postgres user when root."""
        pg_dir = self.data_dir / "postgres"
        command = [str(PG_BIN / "pg_ctl"), "restart", "-D", str(pg_dir / "data"), "-m", mode, "-w",
                   "-l", str(pg_dir / "postgres.log")]  # fmt: skip
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr

    def log_tail(self, lines: int = 30) -> str:
        """The end of the mlflow server's log (for failure messages)."""
        log = self.data_dir / "mlflow.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def _group_alive(pgid: int) -> bool:
    """Some process of group ``pgid`` is alive and not a zombie."""
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return any(not line.strip().startswith("Z") for line in out.splitlines() if line.strip())


@pytest.fixture(scope="session")
def team_server() -> Iterator[TeamServer]:
    """PostgreSQL + mlflow server from scripts/mlflow_server.sh, shared by this directory's tests."""
    if not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}/postgres): run scripts/install_system_deps.sh")
    # Not under pytest's basetemp: that is 0700 root, and PostgreSQL runs as the postgres user.
    data_dir = Path(tempfile.mkdtemp(prefix="codex-team-server-"))
    server = TeamServer(data_dir)
    try:
        yield server.start()
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", "--data-dir", str(data_dir)], capture_output=True, timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking URI or W&B mode from the developer's machine; W&B offline and quiet."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
