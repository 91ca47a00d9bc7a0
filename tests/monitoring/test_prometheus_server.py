"""A real Prometheus server scrapes a real training run's exporter and answers a PromQL query.

Needs ``/usr/bin/prometheus`` (Debian/Ubuntu package ``prometheus``); without it the test fails
and says to run ``scripts/install_system_deps.sh``. The server is our own instance on a free
127.0.0.1 port with its data in tmp_path; a system-wide Prometheus is never used.
"""

from __future__ import annotations

import time
from pathlib import Path

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.monitoring.ui import free_port
from codex_ml.tracking import start_run
from exporter_helpers import (
    prometheus_query as _query,
    require_prometheus as _require_prometheus,
    start_prometheus as _start_prometheus,
    stop_prometheus as _stop,
    wait_for_value as _wait_for_value,
    write_prometheus_config as _write_config,
)

RUN = "prom-e2e"
STEPS = 50


def _loss(step: int) -> float:
    return round(3.0 * 0.95**step, 6)


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
