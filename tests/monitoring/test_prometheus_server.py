"""A real Prometheus server scrapes a real training run's exporter and answers a PromQL query.

Needs ``/usr/bin/prometheus`` (Debian/Ubuntu package ``prometheus``); without it the test fails
and says to run ``scripts/install_system_deps.sh``. The server is our own instance on a free
127.0.0.1 port with its data in tmp_path; a system-wide Prometheus is never used.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.monitoring.ui import free_port
from codex_ml.tracking import start_run

PROMETHEUS = Path("/usr/bin/prometheus")
READY_TIMEOUT = 20.0
QUERY_TIMEOUT = 30.0
RUN = "prom-e2e"
STEPS = 50


def _loss(step: int) -> float:
    return round(3.0 * 0.95**step, 6)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    answer = _get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _write_config(path: Path, target_port: int) -> None:
    path.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: codex_ml\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _require_prometheus() -> None:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run scripts/install_system_deps.sh (as root) to install Prometheus")


def _start_prometheus(base: str, config: Path) -> subprocess.Popen:
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
    while not _ready(base):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"prometheus did not become ready:\n{(root / 'prometheus.log').read_text()[-4000:]}")
        time.sleep(0.1)
    return process


def _wait_for_value(base: str, promql: str, expected: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + QUERY_TIMEOUT
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = _query(base, promql)
        if result and float(result[0]["value"][1]) == expected:
            return result
        time.sleep(0.25)
    pytest.fail(f"{promql} did not return {expected} within {QUERY_TIMEOUT:.0f}s; last answer: {result}")


def test_prometheus_scrapes_a_training_run(tmp_path: Path) -> None:
    _require_prometheus()
    base, config = f"http://127.0.0.1:{free_port()}", tmp_path / "prometheus.yml"
    sink = PrometheusSink(0)
    with start_run(RUN, output_root=tmp_path / "runs", flush_interval=0.05, sinks=[sink]) as run:
        deadline = time.monotonic() + 5
        while sink.bound_address is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.bound_address is not None, "the exporter did not start"
        _write_config(config, sink.bound_address[1])
        process = _start_prometheus(base, config)
        try:
            _wait_for_value(base, 'up{job="codex_ml"}', 1.0)  # scraping has begun
            for step in range(STEPS):  # about 2.5 s: several scrapes see the loss fall
                run.log_metrics({"train/loss": _loss(step), "train/lr": 1e-3}, step=step)
                time.sleep(0.05)
            final = _wait_for_value(base, f'codex_train_loss{{run="{RUN}"}}', _loss(STEPS - 1))
            assert final[0]["metric"] == {"__name__": "codex_train_loss", "run": RUN, "job": "codex_ml",
                                          "instance": f"127.0.0.1:{sink.bound_address[1]}"}
            _assert_scraped_history_decreases(base)
            _assert_health_scraped(base)
        finally:
            _stop(process)


def _assert_scraped_history_decreases(base: str) -> None:
    (series,) = _query(base, f'codex_train_loss{{run="{RUN}"}}[1m]')
    values = [float(v) for _, v in series["values"]]
    assert len(values) >= 2 and values == sorted(values, reverse=True), values


def _assert_health_scraped(base: str) -> None:
    (written,) = _query(base, f'codex_tracker_records_written_total{{run="{RUN}"}}')
    assert float(written["value"][1]) >= 1
    (delivered,) = _query(base, f'codex_tracker_sink_delivered_total{{run="{RUN}",sink="prometheus"}}')
    assert float(delivered["value"][1]) >= 1
    (up,) = _query(base, 'up{job="codex_ml"}')
    assert up["value"][1] == "1"
