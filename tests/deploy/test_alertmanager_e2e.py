"""End to end: a training run's exporter -> the real Prometheus with our alerts.yml -> the real Alertmanager -> a webhook.

Needs ``/usr/bin/prometheus`` and ``/usr/bin/prometheus-alertmanager`` (Debian packages ``prometheus`` and
``prometheus-alertmanager``, installed by scripts/install_system_deps.sh); without them the test fails
and says so. Both servers are our own instances on free 127.0.0.1 ports with their data in tmp_path
(Alertmanager's cluster port is off). The receiver is an ``http.server`` in this process.

The run logs steps, then a NaN loss, then nothing while it stays open. The receiver must get
CodexNonFiniteLoss and CodexHealthEvent, then CodexTrainingStalled, each within the bound that
docs/prometheus.md derives ("How long an alert takes"): the rules are the shipped ones with the stall
threshold and its ``for`` shortened (a small templating step below), and every interval is 1 s.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.monitoring.ui import free_port
from codex_ml.tracking import start_run
from exporter_helpers import (
    READY_TIMEOUT,
    exporter_port,
    is_ready,
    require_prometheus,
    start_prometheus,
    stop_prometheus,
    wait_for_value,
)

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
RUN = "alert-e2e"
# Every interval of the set-up, in seconds (docs/prometheus.md, "How long an alert takes").
SCRAPE = EVALUATION = GROUP_WAIT = 1.0
FLUSH = 0.05  # the run's writer interval: a record reaches the exporter within it
STALL_AFTER = 3.0  # the stall threshold, shortened from 600 s
STALL_FOR = 1.0  # its `for`, shortened from 1m
#: Process start-up, HTTP round trips and Prometheus' notifier queue, measured well under 1 s here.
SLACK = 2.0
NONFINITE_BOUND = FLUSH + SCRAPE + EVALUATION + 0 + GROUP_WAIT + SLACK  # `for: 0s`
STALL_BOUND = STALL_AFTER + EVALUATION + math.ceil(STALL_FOR / EVALUATION) * EVALUATION + GROUP_WAIT + SLACK




# -- the webhook receiver --------------------------------------------------------------------
class Receiver:
    """Collects Alertmanager's webhook posts as ``(monotonic arrival time, alertname, alert)``."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arrived = time.monotonic()
                with receiver._cond:
                    for alert in body["alerts"]:
                        receiver.alerts.append((arrived, alert["labels"]["alertname"], alert))
                    receiver._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, alertname: str, timeout: float) -> tuple[float, dict[str, Any]]:
        """The first firing alert named ``alertname``: (arrival, alert); fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [(t, a) for t, name, a in self.alerts if name == alertname and a["status"] == "firing"]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sorted({name for _, name, _ in self.alerts})
                    pytest.fail(f"no {alertname} alert within {timeout:.1f} s; the receiver got {got}")
                self._cond.wait(left)


# -- configuration ---------------------------------------------------------------------------
def _rules(path: Path) -> None:
    """The shipped rules with the stall threshold and its `for` shortened for a test that takes seconds."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    (stall,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "CodexTrainingStalled"]
    assert "> 600" in stall["expr"], stall["expr"]
    stall["expr"] = stall["expr"].replace("> 600", f"> {STALL_AFTER:g}")
    stall["for"] = f"{STALL_FOR:g}s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))


def _prometheus_config(path: Path, exporter_port: int, alertmanager: str, rules: Path) -> None:
    config = {
        "global": {"scrape_interval": f"{SCRAPE:g}s", "scrape_timeout": f"{SCRAPE:g}s",
                   "evaluation_interval": f"{EVALUATION:g}s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "codex_ml", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))


def _alertmanager_config(path: Path, webhook: str) -> None:
    config = {
        # As docs/prometheus.md recommends: each alert is its own group and waits group_wait only,
        # not group_interval behind an alert already sent.
        "route": {"receiver": "test", "group_by": ["alertname", "run", "rule", "metric", "sink"],
                  "group_wait": f"{GROUP_WAIT:g}s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook, "send_resolved": False}]}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    """A real Alertmanager on 127.0.0.1 routing everything to a Receiver: ``(host:port, receiver)``."""
    if not ALERTMANAGER.exists():
        pytest.fail(f"{ALERTMANAGER} is missing: run scripts/install_system_deps.sh (as root) to install "
                    "Debian's prometheus-alertmanager")  # fmt: skip
    receiver = Receiver()
    root = tmp_path / "alertmanager"
    root.mkdir()
    _alertmanager_config(root / "alertmanager.yml", receiver.url)
    address = f"127.0.0.1:{free_port()}"
    log = open(root / "alertmanager.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        [str(ALERTMANAGER), f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'data'}",
         f"--web.listen-address={address}", "--cluster.listen-address=", "--log.level=warn"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not is_ready(f"http://{address}"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"alertmanager did not become ready:\n{(root / 'alertmanager.log').read_text()[-4000:]}")
            time.sleep(0.1)
        yield address, receiver
    finally:
        stop_prometheus(process)
        receiver.server.shutdown()


def test_nonfinite_and_stall_alerts_reach_the_webhook_within_the_bound(
    tmp_path: Path, alertmanager: tuple[str, Receiver]
) -> None:
    address, receiver = alertmanager
    require_prometheus()
    base = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "prometheus").mkdir()
    rules, config = tmp_path / "prometheus" / "alerts.yml", tmp_path / "prometheus" / "prometheus.yml"
    _rules(rules)
    sink = PrometheusSink(0)
    with start_run(RUN, output_root=tmp_path / "runs", flush_interval=FLUSH, sinks=[sink]) as run:
        _prometheus_config(config, exporter_port(sink), address, rules)
        process = start_prometheus(base, config)
        try:
            wait_for_value(base, 'up{job="codex_ml"}', 1.0)  # scraping and rule evaluation have begun
            for step in range(20):
                run.log_metrics({"train/loss": 3.0 / (step + 1), "val/loss": 3.0}, step=step)
                time.sleep(0.05)
            assert not receiver.alerts, "an alert fired while training was healthy"

            nan_at = time.monotonic()
            run.log_metrics({"train/loss": math.nan}, step=20)  # the last step: the run then stalls
            sink.write_event({"time": time.time(), "step": 20, "rule": "nonfinite", "severity": "critical",
                              "metric": "train/loss", "value": math.nan, "threshold": None,
                              "message": "train/loss is NaN at step 20", "action": "log"})  # fmt: skip
            arrived, alert = receiver.wait("CodexNonFiniteLoss", NONFINITE_BOUND + 5)
            nonfinite_latency = arrived - nan_at
            assert alert["labels"]["metric"] == "codex_train_loss" and alert["labels"]["run"] == RUN
            assert alert["annotations"]["summary"] == f"codex_ml run {RUN}: codex_train_loss is NaN"
            event_arrived, event = receiver.wait("CodexHealthEvent", NONFINITE_BOUND + 5)
            assert event["labels"]["rule"] == "nonfinite"

            stall_arrived, stall = receiver.wait("CodexTrainingStalled", STALL_BOUND + 5)
            stall_latency = stall_arrived - nan_at
            assert stall["labels"]["run"] == RUN and stall["labels"]["severity"] == "critical"
        finally:
            stop_prometheus(process)
    print(f"\nnon-finite: {nonfinite_latency:.2f} s (bound {NONFINITE_BOUND:.2f} s), health event: "
          f"{event_arrived - nan_at:.2f} s, stall: {stall_latency:.2f} s after the last step (bound {STALL_BOUND:.2f} s, "
          f"threshold {STALL_AFTER:g} s)")  # fmt: skip
    assert nonfinite_latency <= NONFINITE_BOUND
    assert event_arrived - nan_at <= NONFINITE_BOUND
    assert STALL_AFTER <= stall_latency <= STALL_BOUND
    assert not [a for _, name, a in receiver.alerts if name not in
                ("CodexNonFiniteLoss", "CodexHealthEvent", "CodexTrainingStalled")]  # fmt: skip
