"""The Prometheus exporter as a real HTTP endpoint: real runs, urllib scrapes, prometheus_client's parser.

Sinks are passed to ``start_run`` directly. Servers listen on port 0 (a free port picked by the
kernel, read back from ``bound_address``) so tests never race for ports.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.backends.prometheus import (
    PUSH_JOB,
    PrometheusBindError,
    PrometheusSink,
    prometheus_name,
)
from codex_ml.tracking import RunInfo, Sink, start_run
from codex_ml.rundir.reader import metric_series
from exporter_helpers import exporter_port

WAIT = 5.0
NAME_RULE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        assert response.status == 200
        return response.read().decode("utf-8")


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _wait_for(port: int, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``ready(samples)`` holds (at most WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        samples = _parse(_scrape_text(port))
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {WAIT:.0f}s; last scrape:\n{sorted(samples.items())}")
        time.sleep(0.02)


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def open_runs() -> Iterator[list[Any]]:
    """Runs to close even when a test fails half-way (so no server outlives its test)."""
    runs: list[Any] = []
    yield runs
    for run in runs:
        run.close()


def _start(tmp_path: Path, open_runs: list[Any], name: str, *sinks: Sink, **options: Any) -> Any:
    run = start_run(name, output_root=tmp_path, flush_interval=0.05, sinks=list(sinks), **options)
    open_runs.append(run)
    return run


# -- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("train/loss", "codex_train_loss"),
        ("system/cpu/percent", "codex_system_cpu_percent"),
        ("system/gpu/0/power_w", "codex_system_gpu_0_power_w"),
        ("eval/acc@1", "codex_eval_acc_1"),
        ("lr-schedule.warmup", "codex_lr_schedule_warmup"),
        ("a//b", "codex_a_b"),
        ("ratio:x", "codex_ratio_x"),
        ("naïve loss", "codex_na_ve_loss"),
        ("already_fine_1", "codex_already_fine_1"),
    ],
)
def test_prometheus_name_is_deterministic_and_legal(key: str, expected: str) -> None:
    assert prometheus_name(key) == expected
    assert NAME_RULE.match(prometheus_name(key))


def test_prometheus_name_without_prefix_never_starts_with_a_digit() -> None:
    assert prometheus_name("1st/loss", prefix="") == "_1st_loss"
    assert prometheus_name("loss", prefix="") == "loss"
    with pytest.raises(ValueError, match="prefix"):
        prometheus_name("loss", prefix="9bad")


def test_constructor_validates_and_stores_only() -> None:
    with pytest.raises(ValueError, match="port"):
        PrometheusSink(None)
    with pytest.raises(ValueError, match="0-65535"):
        PrometheusSink(70000)
    sink = PrometheusSink(0)
    assert sink.name == "prometheus" and sink.bound_address is None and sink.registry is None


# -- serving -------------------------------------------------------------------------------
def test_serves_latest_scalars_and_system_gauges_with_run_label(tmp_path: Path, open_runs: list[Any]) -> None:
    sink = PrometheusSink(0)
    run = _start(tmp_path, open_runs, "exp-1", sink)
    for step in range(20):
        run.log_metrics({"train/loss": 2.0 - step * 0.05, "train/lr": 1e-3}, step=step)
    run.log_system_metrics({"system/cpu/percent": 37.5, "system/memory/used_bytes": 2**30}, sample_index=0)
    port = exporter_port(sink)

    samples = _wait_for(port, lambda s: s.get(_key("codex_train_loss", run="exp-1")) == pytest.approx(2.0 - 19 * 0.05))
    assert samples[_key("codex_train_lr", run="exp-1")] == 1e-3
    assert samples[_key("codex_tracker_last_step", run="exp-1")] == 19
    samples = _wait_for(port, lambda s: _key("codex_system_cpu_percent", run="exp-1") in s)
    assert samples[_key("codex_system_memory_used_bytes", run="exp-1")] == 2**30
    for name, labels in samples:
        assert NAME_RULE.match(name), name
        assert dict(labels)["run"] == "exp-1"


def test_runs_in_one_process_keep_separate_registries(tmp_path: Path, open_runs: list[Any]) -> None:
    sinks = {name: PrometheusSink(0) for name in ("run-a", "run-b")}
    for value, (name, sink) in enumerate(sinks.items()):
        _start(tmp_path, open_runs, name, sink).log_metric("train/loss", float(value))
    for value, (name, sink) in enumerate(sinks.items()):
        samples = _wait_for(exporter_port(sink), lambda s, n=name: _key("codex_train_loss", run=n) in s)
        assert {dict(labels)["run"] for _, labels in samples} == {name}
        assert samples[_key("codex_train_loss", run=name)] == value


def test_colliding_names_are_reported_once_and_both_exported(
    tmp_path: Path, open_runs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sink = PrometheusSink(0)
    run = _start(tmp_path, open_runs, "clash", sink)
    for step in range(5):  # each key arrives five times; the clash is reported once
        run.log_metrics({"train/loss": 1.0, "train.loss": 2.0, "tracker/queue_depth": 3.0}, step=step)
    port = exporter_port(sink)
    samples = _wait_for(port, lambda s: sum(n.startswith("codex_train_loss") for n, _ in s) == 2)

    hashed = {n: v for (n, _), v in samples.items() if re.fullmatch(r"codex_train_loss_[0-9a-f]{8}", n)}
    assert samples[_key("codex_train_loss", run="clash")] == 1.0
    assert list(hashed.values()) == [2.0]
    user_depth = [n for n, _ in samples if re.fullmatch(r"codex_tracker_queue_depth_[0-9a-f]{8}", n)]
    assert len(user_depth) == 1  # the exporter's own name is kept for the health metric
    run.close()
    err = capsys.readouterr().err
    assert len([line for line in _lines(err, "[monitoring] prometheus:") if "'train.loss'" in line]) == 1
    assert len([line for line in _lines(err, "[monitoring] prometheus:") if "'tracker/queue_depth'" in line]) == 1
    assert not _lines(err, "[monitoring-error]")
    assert list(hashed) == [_hashed_name_in_a_fresh_run(tmp_path, "train.loss")]  # deterministic


def _hashed_name_in_a_fresh_run(tmp_path: Path, key: str) -> str:
    sink = PrometheusSink(0)
    with start_run("clash-again", output_root=tmp_path, flush_interval=0.05, sinks=[sink]) as run:
        run.log_metrics({"train/loss": 0.0, key: 0.0})
        samples = _wait_for(exporter_port(sink), lambda s: sum(n.startswith("codex_train_loss") for n, _ in s) == 2)
    return next(n for n, _ in samples if n.startswith("codex_train_loss_"))


def test_non_finite_values_are_exported_as_nan_and_inf(tmp_path: Path, open_runs: list[Any]) -> None:
    sink = PrometheusSink(0)
    run = _start(tmp_path, open_runs, "nonfinite", sink)
    run.log_metrics({"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": 0.5})
    port = exporter_port(sink)
    samples = _wait_for(port, lambda s: _key("codex_d", run="nonfinite") in s)
    assert math.isnan(samples[_key("codex_a", run="nonfinite")])
    assert samples[_key("codex_b", run="nonfinite")] == math.inf
    assert samples[_key("codex_c", run="nonfinite")] == -math.inf
    text = _scrape_text(port)
    assert 'codex_a{run="nonfinite"} NaN' in text
    assert 'codex_b{run="nonfinite"} +Inf' in text
    assert 'codex_c{run="nonfinite"} -Inf' in text


# -- tracker health ------------------------------------------------------------------------
class _NeverStarts(Sink):
    name = "broken"

    def start(self, run: RunInfo) -> None:
        raise ConnectionError("backend unreachable")


def test_health_metrics_are_read_live(tmp_path: Path, open_runs: list[Any]) -> None:
    sink = PrometheusSink(0)
    run = _start(tmp_path, open_runs, "health", sink, _NeverStarts(), close_timeout=1.0)
    run.log_metrics({"train/loss": 1.0}, step=0)
    port = exporter_port(sink)
    written = _key("codex_tracker_records_written_total", run="health")
    delivered = _key("codex_tracker_sink_delivered_total", run="health", sink="prometheus")
    first = _wait_for(port, lambda s: s.get(delivered, 0) >= 1)
    assert _key("codex_tracker_queue_depth", run="health") in first
    assert first[_key("codex_tracker_sink_errors_total", run="health", sink="broken")] == 1
    assert first[_key("codex_tracker_sink_failures_total", run="health", sink="broken")] >= 1

    for step in range(1, 11):
        run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    later = _wait_for(port, lambda s: s.get(delivered, 0) >= 11)
    assert later[written] >= first[written] + 10
    assert later[_key("codex_tracker_last_step", run="health")] == 10
    assert later[_key("codex_tracker_sink_errors_total", run="health", sink="prometheus")] == 0


# -- binding -------------------------------------------------------------------------------
def test_port_in_use_is_one_clear_error_and_training_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        sink = PrometheusSink(port)
        with start_run("busy", output_root=tmp_path, flush_interval=0.05, sinks=[sink], close_timeout=1.0) as run:
            for step in range(20):
                run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
            time.sleep(0.2)  # let the sink's first start attempt fail while the run is open
    err = capsys.readouterr().err
    errors = _lines(err, "[monitoring-error] prometheus:")
    assert len(errors) == 1, err
    assert f"port {port} on 127.0.0.1 is in use; choose another with --prometheus-port" in errors[0]
    # Retrying cannot free the port: one attempt, no retry message, no "repeated failures".
    assert "retrying" not in errors[0] and "repeated failures" not in err
    assert json.loads(run.paths.summary.read_text())["sinks"]["prometheus"]["failures"] == 1
    assert sink.bound_address is None
    assert [s for s, _ in metric_series(run.paths.metrics)["train/loss"]] == list(range(20))
    assert json.loads(run.paths.summary.read_text())["status"] == "FINISHED"


def test_bind_error_names_the_flag_to_change() -> None:
    error = PrometheusBindError("127.0.0.1", 9109, OSError(98, "Address already in use"))
    assert str(error) == "port 9109 on 127.0.0.1 is in use; choose another with --prometheus-port"
    assert isinstance(error, OSError) and error.retryable is False


def _non_loopback_ipv4() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects a route
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_binds_loopback_only_by_default(tmp_path: Path, open_runs: list[Any]) -> None:
    sink = PrometheusSink(0)
    _start(tmp_path, open_runs, "local", sink)
    port = exporter_port(sink)
    assert sink.bound_address == ("127.0.0.1", port)
    _scrape_text(port)
    address = _non_loopback_ipv4()
    if address is not None:  # refused, or filtered: either way not reachable from the network
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            socket.create_connection((address, port), timeout=2).close()


def test_all_interfaces_only_when_asked_and_with_a_warning(
    tmp_path: Path, open_runs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sink = PrometheusSink(0, addr="0.0.0.0")
    _start(tmp_path, open_runs, "wide", sink).log_metric("train/loss", 0.5)
    port = exporter_port(sink)
    assert sink.bound_address == ("0.0.0.0", port)
    _wait_for(port, lambda s: _key("codex_train_loss", run="wide") in s)
    warnings = _lines(capsys.readouterr().err, "[monitoring] prometheus: serving /metrics on all interfaces")
    assert len(warnings) == 1 and "--prometheus-addr 127.0.0.1" in warnings[0]


def test_close_stops_the_server_and_frees_the_port(tmp_path: Path) -> None:
    sink = PrometheusSink(0)
    with start_run("closing", output_root=tmp_path, flush_interval=0.05, sinks=[sink]) as run:
        run.log_metric("train/loss", 0.1)
        port = exporter_port(sink)
        _wait_for(port, lambda s: _key("codex_train_loss", run="closing") in s)
    assert not any(t.name == "codex-sink-prometheus" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # as any server would bind it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    again = PrometheusSink(port)  # the next run can reuse the port at once
    with start_run("closing-2", output_root=tmp_path, flush_interval=0.05, sinks=[again]) as run:
        run.log_metric("train/loss", 0.2)
        assert exporter_port(again) == port


# -- Pushgateway -----------------------------------------------------------------------------
class _Gateway(BaseHTTPRequestHandler):
    """Records every request the way a Pushgateway would receive it."""

    received: list[tuple[str, str, str]]

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    received: list[tuple[str, str, str]] = []
    handler = type("Handler", (_Gateway,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_pushes_on_first_write_and_on_close_at_most_every_interval(
    tmp_path: Path, gateway: tuple[str, list[tuple[str, str, str]]]
) -> None:
    url, received = gateway
    sink = PrometheusSink(None, pushgateway=url, push_interval=60.0)
    with start_run("short-job", output_root=tmp_path, flush_interval=0.05, sinks=[sink]) as run:
        for step in range(5):
            run.log_metric("train/loss", 1.0 / (step + 1), step=step)
            time.sleep(0.1)  # separate batches, so several write_metrics calls
    assert sink.bound_address is None  # push-only: no server
    assert len(received) == 2, [path for _, path, _ in received]  # the first write, then close
    for method, path, _ in received:
        assert (method, path) == ("PUT", f"/metrics/job/{PUSH_JOB}/run/short-job")
    final = _parse(received[-1][2])
    assert final[_key("codex_train_loss", run="short-job")] == 0.2
    assert final[_key("codex_tracker_last_step", run="short-job")] == 4


def test_unreachable_pushgateway_is_reported_and_training_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"  # nothing listens there
    sink = PrometheusSink(0, pushgateway=url)
    with start_run("no-gateway", output_root=tmp_path, flush_interval=0.05, sinks=[sink], close_timeout=1.0) as run:
        for step in range(10):
            run.log_metric("train/loss", 1.0, step=step)
        _wait_for(exporter_port(sink), lambda s: s.get(_key("codex_train_loss", run="no-gateway")) == 1.0)
    errors = _lines(capsys.readouterr().err, "[monitoring-error] prometheus:")
    assert len(errors) == 1 and f"push to the Pushgateway at {url} failed" in errors[0]
    assert len(metric_series(run.paths.metrics)["train/loss"]) == 10
