"""A run's health wiring (tracking/health_link.py) with real runs: events from the writer thread and the
watchdog reach events.ndjson, every sink and summary.json; a stall writes the blocked thread's stack."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

from codex_ml.health import HealthEvent, read_events
from codex_ml.rundir.sink import Sink
from codex_ml.tracking import start_run


class EventSink(Sink):
    """Keeps what the run hands it (events and scalar names)."""

    name = "events"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.scalars: list[str] = []

    def write_metrics(self, points: list) -> None:
        self.scalars += [key for _, _, values in points for key in values]

    def write_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class BrokenSink(Sink):
    """Fails every write: the worker disables it after its retries."""

    name = "broken"

    def write_metrics(self, points: list) -> None:
        raise OSError("backend unreachable")


def _steps(run: Any, first: int, last: int, pause: float = 0.01) -> None:
    for step in range(first, last + 1):
        run.log_metrics({"train/loss": 2.0 + 0.01 * math.sin(step)}, step=step)
        time.sleep(pause)


def test_an_event_reaches_the_file_every_sink_and_the_summary(tmp_path: Path) -> None:
    sink = EventSink()
    with start_run("e", output_root=tmp_path, flush_interval=0.05, sinks=[sink]) as run:
        _steps(run, 1, 5)
        run.log_metrics({"train/loss": math.inf}, step=6)
    [event] = read_events(run.paths.events)
    assert (event.rule, event.step, event.metric, event.value) == ("nonfinite", 6, "train/loss", math.inf)
    assert [e["rule"] for e in sink.events] == ["nonfinite"] and "health/events" in sink.scalars
    summary = json.loads(run.paths.summary.read_text())
    assert summary["health"]["events"] == 1 and summary["health"]["by_rule"] == {"nonfinite": 1}
    assert summary["metrics"]["health/events"] == 1


def test_health_false_raises_nothing_and_writes_no_events_file(tmp_path: Path) -> None:
    with start_run("off", output_root=tmp_path, flush_interval=0.05, health=False) as run:
        run.log_metrics({"train/loss": math.nan}, step=1)
    assert not run.paths.events.exists()
    assert json.loads(run.paths.summary.read_text())["health"]["events"] == 0


def test_a_stall_is_noticed_while_the_training_thread_is_blocked(tmp_path: Path) -> None:
    """The watchdog fires while the 'training' thread waits on a lock (C code), and the stack file shows it."""
    blocker = threading.Lock()
    blocker.acquire()
    with start_run("stall", output_root=tmp_path, flush_interval=0.05, health={"stall": {"floor_s": 1.0}}) as run:
        _steps(run, 1, 10)

        def training_step_stuck_in_a_collective() -> None:
            blocker.acquire(timeout=6)

        worker = threading.Thread(target=training_step_stuck_in_a_collective, name="trainer")
        worker.start()
        deadline = time.time() + 8
        while time.time() < deadline and not run.paths.events.exists():
            time.sleep(0.1)
        blocker.release()
        worker.join()
    stalls = [e for e in read_events(run.paths.events) if e.rule == "stall"]
    assert len(stalls) == 1 and stalls[0].step == 10 and stalls[0].value >= 1.0
    stacks = (run.paths.health / "stacks-10.txt").read_text()
    assert "training_step_stuck_in_a_collective" in stacks and "trainer" in stacks


def test_a_disabled_sink_is_a_sink_down_event(tmp_path: Path) -> None:
    with start_run("down", output_root=tmp_path, flush_interval=0.05, sinks=[BrokenSink()],
                   sink_max_failures=1) as run:  # fmt: skip
        _steps(run, 1, 3)
        deadline = time.time() + 10
        while time.time() < deadline and not run.paths.events.exists():
            time.sleep(0.1)
    downs = [e for e in read_events(run.paths.events) if e.rule == "sink_down"]
    assert len(downs) == 1 and "sink broken is disabled" in downs[0].message


def test_a_stop_action_is_handed_to_the_training_loop(tmp_path: Path) -> None:
    with start_run("stop", output_root=tmp_path, flush_interval=0.05,
                   health={"nonfinite": {"action": "stop"}}) as run:  # fmt: skip
        assert run.health_stop is None
        run.log_metrics({"train/loss": math.nan}, step=3)
        run.flush()
        assert run.health_stop is not None and run.health_stop["rule"] == "nonfinite"


def test_events_logged_by_the_caller_and_counts_survive_a_resume(tmp_path: Path) -> None:
    with start_run("r", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_event(HealthEvent(time.time(), 4, "custom", "warning", None, None, None, "checked by hand"))
    with start_run("r", output_root=tmp_path, flush_interval=0.05, resume=True) as again:
        again.log_metrics({"train/loss": math.nan}, step=5)
    assert [e.rule for e in read_events(again.paths.events)] == ["custom", "nonfinite"]
    summary = json.loads(again.paths.summary.read_text())
    assert summary["health"]["by_rule"] == {"custom": 1, "nonfinite": 1} and summary["metrics"]["health/events"] == 2
