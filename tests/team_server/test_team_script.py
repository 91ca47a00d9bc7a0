"""scripts/mlflow_server.sh as users meet it: user errors are one `error:` line and exit 2 before
anything is created; on a running server `start` is a no-op that prints the URI, `status` says both
run, and no command ever prints the database password."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from team_helpers import SCRIPT


def _script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _script("start", "--data-dir", str(tmp_path / "srv"), "--port", str(port))
    assert f"--port {port} is in use" in _error_line(done)
    assert not (tmp_path / "srv" / "postgres").exists()  # no cluster was created


def test_missing_postgres_names_the_package(tmp_path: Path) -> None:
    done = _script("start", "--data-dir", str(tmp_path / "srv"), env={"PG_BIN": str(tmp_path / "nowhere")})
    assert "'postgresql'" in _error_line(done)


def test_unknown_command_and_bad_port() -> None:
    assert "unknown command 'restart'" in _error_line(_script("restart"))
    assert "--pg-port must be a port number" in _error_line(_script("start", "--pg-port", "70000"))


def test_start_again_and_status_on_a_running_server(team_server) -> None:
    again = team_server.script("start")  # ports come from the last start
    assert again.stdout.strip() == team_server.uri
    status = team_server.script("status")
    assert status.stdout.startswith("postgres: running") and f"mlflow: running at {team_server.uri}" in status.stdout
    password = (team_server.data_dir / "pgpass").read_text().strip().rsplit(":", 1)[1]
    assert oct((team_server.data_dir / "pgpass").stat().st_mode & 0o777) == "0o600"
    logs = [team_server.data_dir / "mlflow.log", team_server.data_dir / "postgres" / "postgres.log"]
    for text in (again.stdout, again.stderr, status.stdout, status.stderr, *(p.read_text() for p in logs)):
        assert password not in text
