"""A sweep on the Prometheus exporter: a trial's every series carries ``sweep`` and ``trial`` labels.

Real exporters scraped over HTTP and parsed with prometheus_client's own parser; a real Prometheus
server (``/usr/bin/prometheus``) scrapes two trials at once and answers a per-trial PromQL query.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.monitoring.ui import free_port
from codex_ml.tracking import TrackingConfig, start_run
from exporter_helpers import exporter_port, require_prometheus, start_prometheus, stop_prometheus, \
    wait_for_value, write_prometheus_config  # fmt: skip

Labels = dict[str, str]


def _trial(tmp_path: Path, sweep: str | None, trial: str | None, **options: Any) -> tuple[Any, PrometheusSink]:
    """A run whose exporter is built from its TrackingConfig, as start_run builds it (from_config)."""
    config = TrackingConfig(output_root=str(tmp_path / "sweeps" / (sweep or "none")), sweep=sweep, trial=trial,
                            prometheus_port=0, flush_interval=0.05, **options)  # fmt: skip
    sink = PrometheusSink.from_config(config)
    run = start_run(trial or "plain", config=config.replace(prometheus_port=None, prometheus_pushgateway=None),
                    sinks=[sink])  # fmt: skip
    return run, sink


def _scrape(port: int) -> list[tuple[str, Labels, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode("utf-8")
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def _scrape_until(sink: PrometheusSink, name: str, wait: float = 5.0) -> list[tuple[str, Labels, float]]:
    """Scrape until a sample named ``name`` is served (the sink's thread gets the records a moment later)."""
    deadline = time.monotonic() + wait
    while True:
        samples = _scrape(exporter_port(sink))
        if any(sample[0] == name for sample in samples):
            return samples
        assert time.monotonic() < deadline, samples
        time.sleep(0.02)


def _event() -> dict[str, Any]:
    return {"time": time.time(), "step": 1, "rule": "nan_loss", "severity": "critical", "metric": "train/loss",
            "value": math.nan, "threshold": None, "message": "nan", "action": "log"}  # fmt: skip


def test_every_series_of_a_trial_has_sweep_and_trial_labels(tmp_path: Path) -> None:
    run, sink = _trial(tmp_path, "lr", "trial-3")
    try:
        run.log_metrics({"val/loss": 1.25}, step=1)
        run.log_event(_event())
        run.flush()
        samples = _scrape_until(sink, "codex_health_events_total")
    finally:
        run.close()
    names = {name for name, _, _ in samples}
    assert {"codex_val_loss", "codex_tracker_records_written_total", "codex_tracker_sink_delivered_total",
            "codex_health_events_total", "codex_health_active"} <= names  # fmt: skip
    for name, labels, _ in samples:
        assert (labels["run"], labels["sweep"], labels["trial"]) == ("trial-3", "lr", "trial-3"), (name, labels)
    assert ("codex_val_loss", {"run": "trial-3", "sweep": "lr", "trial": "trial-3"}, 1.25) in samples
    assert any(n == "codex_health_events_total" and lb.get("rule") == "nan_loss" for n, lb, _ in samples)


def test_a_run_outside_a_sweep_keeps_the_run_label_alone(tmp_path: Path) -> None:
    run, sink = _trial(tmp_path, None, None)
    try:
        run.log_metrics({"val/loss": 2.0}, step=0)
        run.flush()
        samples = _scrape_until(sink, "codex_val_loss")
    finally:
        run.close()
    assert all("sweep" not in labels and "trial" not in labels for _, labels, _ in samples)
    assert ("codex_val_loss", {"run": "plain"}, 2.0) in samples


class _Gateway(BaseHTTPRequestHandler):
    """Records the path of every push (the grouping key is in it)."""

    paths: list[str]

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    server = HTTPServer(("127.0.0.1", 0), type("Handler", (_Gateway,), {"paths": paths}))
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()


def test_pushes_group_by_sweep_and_trial(tmp_path: Path, gateway: tuple[str, list[str]]) -> None:
    url, paths = gateway
    config = TrackingConfig(output_root=str(tmp_path), sweep="lr", trial="t0", prometheus_pushgateway=url,
                            flush_interval=0.05)  # fmt: skip
    with start_run("t0", config=config) as run:
        run.log_metrics({"val/loss": 1.0}, step=0)
    assert paths and set(paths) == {"/metrics/job/codex_ml/run/t0/sweep/lr/trial/t0"}


def test_prometheus_tells_the_trials_apart(tmp_path: Path) -> None:
    require_prometheus()
    base, config = f"http://127.0.0.1:{free_port()}", tmp_path / "prometheus.yml"
    trials = [_trial(tmp_path, "lr", f"t{i}") for i in range(2)]
    try:
        for index, (run, _) in enumerate(trials):
            run.log_metrics({"val/loss": 1.0 + index}, step=0)
            run.flush()
        write_prometheus_config(config, *(exporter_port(sink) for _, sink in trials))
        process = start_prometheus(base, config)
        try:
            wait_for_value(base, 'count(codex_val_loss{sweep="lr"})', 2.0)
            (best,) = wait_for_value(base, 'bottomk(1, codex_val_loss{sweep="lr"})', 1.0)
            assert best["metric"]["trial"] == "t0" and best["metric"]["run"] == "t0"
            (t1,) = wait_for_value(base, 'codex_val_loss{sweep="lr",trial="t1"}', 2.0)
            assert t1["metric"]["job"] == "codex_ml"
        finally:
            stop_prometheus(process)
    finally:
        for run, _ in trials:
            run.close()
