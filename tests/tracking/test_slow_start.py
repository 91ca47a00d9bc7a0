"""A sink that takes long to start (MLflow, W&B: imports, connecting) never delays start_run or
the first log calls: records wait in its queue and reach it once it is up, and what it learns
at start (its run id) is written to run.json's backends when it knows it (docs/tracking.md)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from codex_ml.rundir.sink import MetricPoint
from codex_ml.tracking import RunInfo, Sink, start_run

#: The slow start ends when the test says so, or after this long (a start_run that waited for it fails the test).
START_S = 10.0


class RecordingSink(Sink):
    """Keeps every point it receives, in order."""

    name = "recording"

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []
        self.started_for: str | None = None

    def start(self, run: RunInfo) -> None:
        self.started_for = run.name

    def write_metrics(self, points: list[MetricPoint]) -> None:
        self.points.extend(points)

    @property
    def steps(self) -> list[int]:
        return [step for step, _, _ in self.points]


class SlowStartSink(RecordingSink):
    """Starts when ``go`` is set, then records a backend id the way the MLflow sink does."""

    name = "slowstart"

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def start(self, run: RunInfo) -> None:
        self.go.wait(START_S)
        super().start(run)
        run.remember(self.name, {"run_id": "backend-42"})


def _backends(run) -> dict:
    return json.loads(run.paths.run_file.read_text()).get("backends", {})


def test_start_run_and_logging_do_not_wait_for_a_slow_sink_start(tmp_path: Path) -> None:
    slow, quick = SlowStartSink(), RecordingSink()
    began = time.perf_counter()
    run = start_run("slow", output_root=str(tmp_path), flush_interval=0.05, sinks=[slow, quick])
    for step in range(200):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    logged = time.perf_counter() - began
    assert logged < 1.0, f"start_run + 200 log calls took {logged:.2f} s: they waited for the sink's start"
    deadline = time.monotonic() + 10
    while len(quick.points) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert quick.steps == list(range(200))  # the other sink is not held up either
    assert slow.started_for is None and "slowstart" not in _backends(run)  # not known yet: not written
    slow.go.set()
    report = run.close(timeout=20)
    assert slow.steps == list(range(200))  # queued meanwhile, delivered once it was up, in order
    assert report.complete and report.sinks["slowstart"]["delivered"] == 200
    assert _backends(run)["slowstart"] == {"run_id": "backend-42"}  # written when known
