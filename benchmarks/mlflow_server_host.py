"""The server under test for benchmarks/bench_mlflow_server.py: started here (sqlite), through
scripts/mlflow_server.sh (PostgreSQL), or one already running; its CPU seconds and its storage per point.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "mlflow_server.sh"
START_TIMEOUT = 120.0


class ServerError(Exception):
    """The server could not be started or reached (the benchmark prints one error line)."""


class Server:
    """A running MLflow server: its URI, its processes (by listening port) and how to stop it."""

    def __init__(self, uri: str, kind: str, ports: list[int]) -> None:
        self.uri, self.kind, self.ports = uri, kind, ports

    def describe(self) -> str:
        """One line for the report."""
        return f"{self.kind} at {self.uri}"

    def cpu_seconds(self) -> float:
        """CPU seconds so far of every process listening on the server's ports and their children
        (0 for a server on another machine)."""
        return sum(_cpu(pid) for pid in _server_pids(self.ports))

    def storage(self) -> dict[str, Any] | None:
        """Bytes the metric points take in the backend store (None where it cannot be read)."""
        return None

    def stop(self) -> None:
        """Stop what this benchmark started (nothing for a server it was given)."""


class SqliteServer(Server):
    """``mlflow server`` on a sqlite file, started and stopped here (the suite's test server)."""

    def __init__(self, root: Path, workers: int) -> None:
        from codex_ml.monitoring.ui import ViewerError, free_port, wait_until_answers

        root.mkdir(parents=True, exist_ok=True)
        port, self.db = free_port(), root / "mlflow.db"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.db}",
                   "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or "SQLALCHEMYSTORE" in k}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # as scripts/mlflow_server.sh: no job-runner processes
        with open(root / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
        super().__init__(f"http://127.0.0.1:{port}", f"mlflow server (sqlite, {workers} workers)", [port])
        try:
            wait_until_answers(f"{self.uri}/health", self.process, START_TIMEOUT, root / "server.log", "mlflow server")
        except ViewerError as exc:
            self.stop()
            raise ServerError(str(exc)) from exc

    def storage(self) -> dict[str, Any] | None:
        """The whole sqlite file over the metric rows (every table and index, so an upper bound per row)."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
        size = self.db.stat().st_size
        return {"store": "sqlite file", "metric_rows": rows, "bytes": size, "bytes_per_row": size / max(1, rows)}

    def stop(self) -> None:
        """Stop the server's process group."""
        from codex_ml.monitoring.ui import stop_process_group

        stop_process_group(self.process)


class ScriptServer(Server):
    """PostgreSQL 15 + ``mlflow server`` through scripts/mlflow_server.sh start/stop (its interface is in
    the script's header: the tracking URI is start's only stdout line; the database password is in
    DIR/pgpass, read through PGPASSFILE)."""

    def __init__(self, root: Path, workers: int) -> None:
        from codex_ml.monitoring.ui import free_port

        # Run as root, PostgreSQL runs as the postgres user, who must be able to reach the data dir.
        root.mkdir(parents=True, exist_ok=True)
        for folder in (root, *root.parents):
            if folder.stat().st_mode & 0o005 != 0o005 and os.getuid() == 0 and str(folder).startswith("/tmp/"):
                folder.chmod(folder.stat().st_mode | 0o005)
        self.root = root
        port, self.pg_port = free_port(), free_port()
        try:
            done = self._script("start", "--port", str(port), "--pg-port", str(self.pg_port), "--workers", str(workers))
        except ServerError:
            try:  # a failed start may have left PostgreSQL or the server running
                self._script("stop")
            except ServerError:
                pass
            raise
        super().__init__(done.stdout.strip(), f"mlflow server on PostgreSQL 15 ({workers} workers, "
                         "scripts/mlflow_server.sh)", [port, self.pg_port])  # fmt: skip

    def _script(self, command: str, *arguments: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", str(SCRIPT), command, "--data-dir", str(self.root), *arguments],
                              capture_output=True, text=True, timeout=START_TIMEOUT * 2, check=False)  # fmt: skip
        if done.returncode != 0:
            raise ServerError(f"scripts/mlflow_server.sh {command} failed: {done.stderr.strip()[-800:]}")
        return done

    def storage(self) -> dict[str, Any] | None:
        """pg_total_relation_size of the metrics table (heap, indexes, TOAST) over its rows, and the
        latest_metrics table MLflow keeps beside it."""
        os.environ["PGPASSFILE"] = str(self.root / "pgpass")
        return postgres_storage(f"postgresql://mlflow@127.0.0.1:{self.pg_port}/mlflow")

    def stop(self) -> None:
        """scripts/mlflow_server.sh stop."""
        self._script("stop")


def postgres_storage(backend_uri: str) -> dict[str, Any]:
    """Rows and bytes of MLflow's metric tables in a PostgreSQL backend store."""
    import psycopg

    with psycopg.connect(backend_uri, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE metrics")  # settle the free-space map so the size is what the rows take
        rows = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        size, heap = conn.execute("SELECT pg_total_relation_size('metrics'), pg_relation_size('metrics')").fetchone()
        latest = conn.execute("SELECT pg_total_relation_size('latest_metrics')").fetchone()[0]
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"store": "postgres", "metric_rows": rows, "bytes": size, "heap_bytes": heap,
            "bytes_per_row": size / max(1, rows), "latest_metrics_bytes": latest, "database_bytes": database}


def open_server(kind: str, tracking_uri: str | None, root: Path, workers: int) -> Server:
    """The server under test: ``tracking_uri`` if given, else one started with ``kind``."""
    if tracking_uri:
        parsed = urlparse(tracking_uri)
        if parsed.scheme not in ("http", "https"):
            raise ServerError(f"--tracking-uri {tracking_uri}: an http(s):// MLflow server is needed")
        local = parsed.hostname in ("127.0.0.1", "localhost")
        return Server(tracking_uri, "mlflow server (given)", [parsed.port or 80] if local else [])
    if kind == "script":
        if not SCRIPT.is_file():
            raise ServerError(f"{SCRIPT.relative_to(REPO)} not found; use --server sqlite or --tracking-uri URI")
        return ScriptServer(root, workers)
    return SqliteServer(root, workers)


def _server_pids(ports: list[int]) -> set[int]:
    """The processes of the servers listening on ``ports``: from each listener up to the topmost ancestor
    that is not this benchmark or one of its ancestors (a server's workers share its socket, and only one of
    them may be reported as the listener), and every descendant of that one."""
    import psutil

    if not ports:
        return set()
    ours = {os.getpid(), 1, *(p.pid for p in psutil.Process().parents())}
    listeners = {c.pid for c in psutil.net_connections(kind="tcp")
                 if c.pid and c.status == psutil.CONN_LISTEN and c.laddr.port in ports}  # fmt: skip
    pids: set[int] = set()
    for pid in listeners:
        try:
            top = psutil.Process(pid)
            while top.ppid() not in ours:
                top = top.parent()
            pids.update([top.pid, *(child.pid for child in top.children(recursive=True))])
        except (psutil.Error, AttributeError):  # gone meanwhile (AttributeError: parent() returned None)
            continue
    return pids


def _cpu(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (Postgres backends that ended, replaced
    server workers): each exited process is counted once, by its parent."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system + times.children_user + times.children_system
