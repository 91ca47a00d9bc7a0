"""Helpers for the tests that scrape codex_ml's Prometheus exporter (tests/ is on sys.path: conftest.py is here),
and for those that have a real Prometheus server (``/usr/bin/prometheus``) scrape it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

#: Seconds an exporter may take to bind its port.
WAIT = 5.0
PROMETHEUS = Path("/usr/bin/prometheus")
READY_TIMEOUT = 20.0
QUERY_TIMEOUT = 30.0


def exporter_port(sink: Any, wait: float = WAIT) -> int:
    """The port a started PrometheusSink serves on, once it has bound one (fails after ``wait`` s)."""
    deadline = time.monotonic() + wait
    while sink.bound_address is None:
        assert time.monotonic() < deadline, f"the exporter did not start within {wait:.0f} s"
        time.sleep(0.01)
    return sink.bound_address[1]


def free_port_pair() -> int:
    """A base port such that base and base + 1 were both free a moment ago (two ranks' exporters)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return base
    raise AssertionError("no two adjacent free ports")


# -- a real Prometheus server ------------------------------------------------------------------
def require_prometheus() -> None:
    """Fail with the install hint when the Prometheus binary is missing."""
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run scripts/install_system_deps.sh (as root) to install Prometheus")


def write_prometheus_config(path: Path, *target_ports: int, job: str = "") -> None:
    """A config scraping ``127.0.0.1:<port>`` for each port every second, as job ``codex_ml``; or, with
    ``job`` (the YAML lines of the job after its name), that job instead."""
    targets = ", ".join(f"'127.0.0.1:{port}'" for port in target_ports)
    path.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: codex_ml\n"
        + (job or f"    static_configs:\n      - targets: [{targets}]\n")
    )


def start_prometheus(base: str, config: Path) -> subprocess.Popen:
    """Our own Prometheus on ``base`` (http://127.0.0.1:PORT), data next to ``config``; waits until ready."""
    root = config.parent
    log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    command = [
        str(PROMETHEUS),
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'tsdb'}",
        f"--web.listen-address={base.removeprefix('http://')}",
        "--log.level=warn",
    ]
    process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while not is_ready(base):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_prometheus(process)
            pytest.fail(f"prometheus did not become ready:\n{(root / 'prometheus.log').read_text()[-4000:]}")
        time.sleep(0.1)
    return process


def stop_prometheus(process: subprocess.Popen) -> None:
    """Terminate (then kill) the server."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def prometheus_query(base: str, promql: str) -> list[dict[str, Any]]:
    """The result vector (or matrix) of an instant query."""
    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=2) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for_value(base: str, promql: str, expected: float) -> list[dict[str, Any]]:
    """Query until the first series has ``expected`` (fails after QUERY_TIMEOUT)."""
    deadline = time.monotonic() + QUERY_TIMEOUT
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = prometheus_query(base, promql)
        if result and float(result[0]["value"][1]) == expected:
            return result
        time.sleep(0.25)
    pytest.fail(f"{promql} did not return {expected} within {QUERY_TIMEOUT:.0f}s; last answer: {result}")


def is_ready(base: str) -> bool:
    """Whether the Prometheus-style server at ``base`` answers /-/ready (Prometheus, Alertmanager)."""
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
