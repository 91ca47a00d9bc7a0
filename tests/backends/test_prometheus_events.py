"""Health events on the Prometheus exporter: ``codex_health_events_total{rule}`` and ``codex_health_active{rule}``.

A real run serves a real ``/metrics`` endpoint; events are handed to the sink's ``write_event`` the way
the run's dispatcher hands EVENT records to it, and the endpoint is scraped with urllib and read back
with prometheus_client's own parser (the one Prometheus' text format is defined by).
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.tracking import start_run
from exporter_helpers import exporter_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _event(rule: str, step: int | None = 7, value: float | None = math.nan) -> dict[str, Any]:
    return {"time": time.time(), "step": step, "rule": rule, "severity": "critical", "metric": "train/loss",
            "value": value, "threshold": None, "message": f"{rule} fired", "action": "log"}  # fmt: skip


def _scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, PrometheusSink, int]]:
    sink = PrometheusSink(0, health_active_seconds=0.5)
    run = start_run("events", output_root=tmp_path, flush_interval=0.05, sinks=[sink])
    try:
        yield run, sink, exporter_port(sink)
    finally:
        run.close()


def test_no_event_families_before_the_first_event(served: tuple[Any, PrometheusSink, int]) -> None:
    run, _, port = served
    run.log_metrics({"train/loss": 1.0}, step=0)
    run.flush()
    text, _ = _scrape(port)
    assert "codex_health_" not in text


def test_events_count_per_rule_and_active_clears_after_the_quiet_window(served: tuple[Any, PrometheusSink, int]) -> None:
    _, sink, port = served
    sink.write_event(_event("nonfinite"))
    sink.write_event(_event("nonfinite", step=8))
    sink.write_event(_event("stall", step=None, value=None))
    text, samples = _scrape(port)
    assert samples[_key("codex_health_events_total", run="events", rule="nonfinite")] == 2.0
    assert samples[_key("codex_health_events_total", run="events", rule="stall")] == 1.0
    assert samples[_key("codex_health_active", run="events", rule="nonfinite")] == 1.0
    assert samples[_key("codex_health_active", run="events", rule="stall")] == 1.0
    assert "# TYPE codex_health_events_total counter" in text and "# TYPE codex_health_active gauge" in text
    assert all("step" not in dict(labels) for _, labels in samples)  # a step is never a label

    time.sleep(0.6)  # quiet for longer than the 0.5 s window
    _, samples = _scrape(port)
    assert samples[_key("codex_health_active", run="events", rule="nonfinite")] == 0.0
    assert samples[_key("codex_health_events_total", run="events", rule="nonfinite")] == 2.0  # a counter never drops
    sink.write_event(_event("nonfinite", step=9))
    _, samples = _scrape(port)
    assert samples[_key("codex_health_active", run="events", rule="nonfinite")] == 1.0
    assert samples[_key("codex_health_active", run="events", rule="stall")] == 0.0


def test_the_running_count_metric_does_not_clash_with_the_counter(
    served: tuple[Any, PrometheusSink, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run, sink, port = served
    sink.write_event(_event("spike"))
    # The dispatcher logs health/events as a scalar next to each event; Prometheus would refuse a
    # gauge codex_health_events next to the counter family of that name (OpenMetrics names the family
    # without _total), so the scalar is left out.
    run.log_metrics({"train/loss": 2.0, "health/events": 1.0}, step=3)
    run.flush()
    text, samples = _scrape(port)
    assert samples[_key("codex_train_loss", run="events")] == 2.0
    assert text.count("# TYPE codex_health_events") == 1
    assert not [name for name, _ in samples if name.startswith("codex_health_events_")
                and name not in ("codex_health_events_total", "codex_health_events_created")]  # fmt: skip
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    # Prometheus asks for OpenMetrics first; its parser refuses a family name given twice.
    names = [family.name for family in openmetrics_families(generate_latest(sink.registry).decode())]
    assert names.count("codex_health_events") == 1 and len(names) == len(set(names))
    run.close()
    assert "clashes" not in capsys.readouterr().err


def test_events_are_pushed_to_the_pushgateway_payload(tmp_path: Path) -> None:
    """The collector serves the same families to a push as to a scrape (one registry)."""
    from prometheus_client import generate_latest

    sink = PrometheusSink(0)
    with start_run("pushed", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        exporter_port(sink)
        sink.write_event(_event("grad_explosion"))
        payload = generate_latest(sink.registry).decode()
    assert 'codex_health_events_total{rule="grad_explosion",run="pushed"} 1.0' in payload
    assert 'codex_health_active{rule="grad_explosion",run="pushed"} 1.0' in payload
