"""The same contract for every built-in sink class (every row of ``codex_ml.backends.BACKENDS``).

Each sink is built by its ``from_config``, driven by a real run and read back with the
backend's own tools: it starts, stores every scalar, stores histograms, text and artifacts where
the backend has them, closes with everything delivered and no ``[monitoring-error]``, and a
back-fill (``export --to``) right after sends nothing, twice, leaving every point stored once.
A new row is picked up here without editing this file; it then needs a probe below.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codex_ml.backends import BACKENDS
from codex_ml.tracking import start_run
from codex_ml.tracking.config import TrackingConfig

STEPS = 5
KEYS = ("train/loss", "train/lr")
Series = dict[str, list[tuple[int, float]]]


def _value(key: str, step: int) -> float:
    return round(1.0 / (step + 1) + KEYS.index(key), 4)


EXPECTED: Series = {key: [(s, _value(key, s)) for s in range(STEPS)] for key in KEYS}


@dataclass
class Probe:
    """How to read one backend back; ``None`` for something the backend has no type for."""

    config: dict[str, Any]
    #: None for a backend that holds no scalars (the alert sink only delivers health events).
    scalars: Callable[[Any, Any], Series] | None
    histogram: Callable[[Any], bool] | None = None
    text: Callable[[Any], str] | None = None
    artifact: Callable[[Any], str] | None = None
    #: Read scalars while the run is open (a server that stops on close).
    while_open: bool = False
    #: Compare scalars after a float32 round trip.
    float32: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: The health events the backend holds, read after close (the test logs EVENT once, then checks).
    events: Callable[[Any], list[dict[str, Any]]] | None = None


# -- TensorBoard: its own EventAccumulator --------------------------------------------------
def _tb(run: Any) -> Any:
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(run.paths.tensorboard), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0},
                              purge_orphaned_data=False)  # fmt: skip
    acc.Reload()
    return acc


def _tb_scalars(run: Any, sink: Any) -> Series:
    acc = _tb(run)
    return {k: [(e.step, e.value) for e in acc.Scalars(k)] for k in acc.Tags()["scalars"]}


def _tb_text(run: Any) -> str:
    return _tb(run).Tensors("notes")[0].tensor_proto.string_val[0].decode("utf-8")


# -- MLflow: MlflowClient on the run's store ------------------------------------------------
def _mlflow(run: Any) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    state = json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]
    return MlflowClient(tracking_uri=state["tracking_uri"]), state["run_id"]


def _mlflow_scalars(run: Any, sink: Any) -> Series:
    client, run_id = _mlflow(run)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in KEYS}


def _mlflow_file(run: Any, path: str) -> str:
    client, run_id = _mlflow(run)
    return Path(client.download_artifacts(run_id, path, str(run.paths.root / "download"))).read_text()


# -- W&B (offline): the .wandb run files ----------------------------------------------------
def _wandb_scalars(run: Any, sink: Any) -> Series:
    from codex_ml.backends.wandb import find_run_files, read_history

    rows = [row for path in find_run_files(run.paths.root) for row in read_history(path)]
    return {k: [(row["step"], row[k]) for row in rows if k in row] for k in KEYS}


def _wandb_histogram(run: Any) -> bool:
    from codex_ml.backends.wandb import find_run_files, read_history

    return any(row.get("weights/_type") == "histogram" for p in find_run_files(run.paths.root) for row in read_history(p))


def _wandb_artifact(run: Any) -> str:
    (copy,) = run.paths.wandb.glob("wandb/offline-run-*/files/notes.txt")
    return copy.read_text()


# -- Prometheus: the gauges its registry serves ---------------------------------------------
def _prometheus_scalars(run: Any, sink: Any) -> Series:
    from codex_ml.backends.prometheus import prometheus_name

    deadline = time.monotonic() + 10
    while True:  # the sink's thread may still be on its way
        registry = sink.registry  # None until the sink's thread has started it
        got = {k: registry.get_sample_value(prometheus_name(k), {"run": run.name}) if registry else None for k in KEYS}
        if all(got[k] == _value(k, STEPS - 1) for k in KEYS) or time.monotonic() > deadline:
            return {k: [(STEPS - 1, got[k])] for k in KEYS}  # a gauge holds the latest value only
        time.sleep(0.02)


# -- Alerts: the command's own output file (in the working directory the test moves to) ------------
_ALERTS_FILE = "alerts-contract.jsonl"
_ALERTS_COMMAND = shlex.join([sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')",
                              _ALERTS_FILE])  # fmt: skip
EVENT = {"time": 1.0, "step": 3, "rule": "spike", "severity": "warning", "metric": "train/loss", "value": 9.5,
         "threshold": 6.0, "message": "train/loss spiked", "action": "log"}  # fmt: skip


def _alerts_events(run: Any) -> list[dict[str, Any]]:
    return [json.loads(line)["event"] for line in Path(_ALERTS_FILE).read_text().splitlines()]


PROBES = {
    "tensorboard": Probe({"enable_tensorboard": True}, _tb_scalars, histogram=lambda run: "weights" in _tb(run).Tags()["histograms"],
                         text=_tb_text, float32=True),
    "mlflow": Probe({"enable_mlflow": True}, _mlflow_scalars, text=lambda run: _mlflow_file(run, "text/notes/step_00000002.txt"),
                    artifact=lambda run: _mlflow_file(run, "notes.txt")),
    "wandb": Probe({"enable_wandb": True}, _wandb_scalars, histogram=_wandb_histogram, artifact=_wandb_artifact),
    "prometheus": Probe({"prometheus_port": 0}, _prometheus_scalars, while_open=True),
    "alerts": Probe({"alert_command": _ALERTS_COMMAND}, None, events=_alerts_events),
}  # fmt: skip


def _expected(probe: Probe) -> Series:
    series = {k: v[-1:] for k, v in EXPECTED.items()} if probe.while_open else EXPECTED
    if probe.float32:
        return {k: [(s, float(np.float32(v))) for s, v in points] for k, points in series.items()}
    return series


@pytest.mark.parametrize("name", list(BACKENDS))
def test_sink_contract(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from codex_ml.monitoring.replay import replay
    from codex_ml.backends import replayable

    assert name in PROBES, f"backend {name!r} has no probe in this contract test"
    probe = PROBES[name]
    monkeypatch.delenv("WANDB_MODE", raising=False)
    row = BACKENDS[name]
    if probe.events:
        monkeypatch.chdir(tmp_path)
    sink = getattr(row.load(), row.sink).from_config(TrackingConfig(**probe.config))
    (tmp_path / "notes.txt").write_text("hello from codex_ml\n")

    # start + write_metrics + histogram + text + artifact
    run = start_run("contract", output_root=tmp_path / "runs", flush_interval=0.05, sinks=[sink])
    try:
        for step in range(STEPS):
            run.log_metrics({k: _value(k, step) for k in KEYS}, step=step)
        run.log_histogram("weights", np.arange(100.0), step=1)
        run.log_text("notes", "héllo\nworld", step=2)
        run.log_artifact(tmp_path / "notes.txt")
        if probe.events:
            run.log_event(EVENT)
        run.flush()
        open_scalars = probe.scalars(run, sink) if probe.while_open and probe.scalars else None
    finally:
        report = run.close()

    # close: everything delivered, nothing reported
    assert report.complete and report.status == "FINISHED", report
    stats = report.sinks[name]
    assert stats["undelivered"] == 0 and stats["dropped"] == 0 and not stats["disabled"], stats
    assert "[monitoring-error]" not in capfd.readouterr().err
    if probe.scalars:
        scalars = open_scalars if probe.while_open else probe.scalars(run, sink)
        assert {k: sorted(scalars[k]) for k in KEYS} == _expected(probe)
    if probe.events:
        assert probe.events(run) == [EVENT]
    if probe.histogram:
        assert probe.histogram(run)
    if probe.text:
        assert probe.text(run) == "héllo\nworld"
    if probe.artifact:
        assert probe.artifact(run) == "hello from codex_ml\n"

    # idempotent back-fill: nothing is missing, so nothing is sent, twice; every point is stored once
    if name in replayable():
        assert [replay(run.paths.root, name, progress=False).sent for _ in range(2)] == [0, 0]
        assert {k: sorted(v) for k, v in probe.scalars(run, sink).items() if k in KEYS} == _expected(probe)
