"""Local servers for the viewer tests: free ports, start/wait/stop in a process group, bound addresses."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_ml.monitoring.ui import answers, stop_process_group

VENV_BIN = Path(sys.executable).parent
# Generous: the servers start on a loaded 2-core CI machine; a healthy start needs a fraction of it.
SERVER_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(name: str, command: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None
          ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start a server in its own process group, wait until ``ready_url`` answers 200, stop it on exit."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)  # fmt: skip
    try:
        _wait_until_answers(name, process, ready_url, log_path)
        yield process
    finally:
        stop_process_group(process)


def _wait_until_answers(name: str, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while not answers(url):
        if process.poll() is not None:
            pytest.fail(f"{name} exited with status {process.returncode} before answering {url}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer {url} within {SERVER_TIMEOUT:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.25)


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_bytes()[-size:].decode("utf-8", "replace") if path.exists() else "(no log)"


def listening_addresses(process: subprocess.Popen[bytes]) -> set[str]:
    """The IP addresses the process and its children listen on (TCP)."""
    import psutil

    parent = psutil.Process(process.pid)
    addresses = set()
    for proc in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            addresses.update(c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
    return addresses
