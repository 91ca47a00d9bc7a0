"""Fan-out under failure: a broken, flaky or slow sink never costs the NDJSON log or the
other sinks a record, is reported on exactly one ``[monitoring-error]`` line, and is
accounted for in the CloseReport. Uses real Sink subclasses (the protocol is ours)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from codex_ml.tracking import RunInfo, Sink, start_run
from codex_ml.rundir.sink import MetricPoint

CLOSE_LIMIT_S = 20.0  # generous: only here to turn a hang into a failure


class RecordingSink(Sink):
    """Keeps every call it receives, in order."""

    name = "recording"

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []
        self.texts: list[tuple[int, str, str]] = []
        self.params: dict[str, Any] = {}
        self.started_for: str | None = None
        self.closed_with: str | None = None

    def start(self, run: RunInfo) -> None:
        self.started_for = run.name

    def write_metrics(self, points: list[MetricPoint]) -> None:
        self.points.extend(points)

    def write_text(self, step: int, wall_time: float, name: str, text: str) -> None:
        self.texts.append((step, name, text))

    def write_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def close(self, status: str) -> None:
        self.closed_with = status

    @property
    def steps(self) -> list[int]:
        return [step for step, _, _ in self.points]


class FailingSink(RecordingSink):
    """write_metrics always raises; counts the attempts."""

    name = "failing"

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def write_metrics(self, points: list[MetricPoint]) -> None:
        self.attempts += 1
        raise ConnectionError("backend unreachable")


class FailingStartSink(RecordingSink):
    """start() always raises, so nothing can ever be written."""

    name = "nostart"

    def __init__(self) -> None:
        super().__init__()
        self.write_calls = 0

    def start(self, run: RunInfo) -> None:
        raise PermissionError("token rejected")

    def write_metrics(self, points: list[MetricPoint]) -> None:
        self.write_calls += 1
        super().write_metrics(points)


class FlakySink(RecordingSink):
    """write_metrics fails on its first ``failures`` calls, then records normally."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    def write_metrics(self, points: list[MetricPoint]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise TimeoutError("backend timed out")
        super().write_metrics(points)


class SlowSink(RecordingSink):
    """Takes ``delay`` seconds per write_metrics call."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def write_metrics(self, points: list[MetricPoint]) -> None:
        time.sleep(self.delay)
        super().write_metrics(points)


def _error_lines(stderr: str, sink: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"[monitoring-error] {sink}:")]


def _ndjson_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()]


def _log_in_batches(run, total: int, per_batch: int) -> None:
    """Log ``total`` steps, flushing every ``per_batch`` so the sinks see several batches."""
    for step in range(total):
        run.log_metrics({"loss": 1.0 / (step + 1), "step_copy": step}, step=step)
        if (step + 1) % per_batch == 0:
            run.flush()


def _close(run):
    began = time.monotonic()
    report = run.close()
    assert time.monotonic() - began < CLOSE_LIMIT_S, "close() hung"
    return report


def test_recording_sink_alone_receives_everything(tmp_path: Path) -> None:
    """Baseline for the tests below: a healthy sink gets every record once, in order, is
    started and closed with the run's status, and the report is complete."""
    recording = RecordingSink()
    run = start_run("baseline", output_root=str(tmp_path), flush_interval=0.05, sinks=[recording], params={"a": {"b": 1}})
    _log_in_batches(run, 100, per_batch=25)
    run.log_text("sample", "hello", step=99)
    report = _close(run)
    assert recording.steps == list(range(100))
    assert recording.texts == [(99, "sample", "hello")]
    assert recording.params == {"a.b": 1}
    assert (recording.started_for, recording.closed_with) == ("baseline", "FINISHED")
    assert report.complete is True
    assert report.sinks["recording"]["delivered"] == 102  # params + 100 metrics + text
    assert run.sink_names == ["recording"]


def test_always_failing_sink_is_reported_once_and_others_get_everything(tmp_path: Path, capfd) -> None:
    """A sink whose writes always fail is retried, disabled and reported on exactly one
    [monitoring-error] line; the healthy sink and the NDJSON log get all records; close()
    says the failing sink missed every record and the run is not complete."""
    failing, recording = FailingSink(), RecordingSink()
    run = start_run(
        "failing", output_root=str(tmp_path), flush_interval=0.05, sinks=[failing, recording], sink_max_failures=2
    )
    _log_in_batches(run, 300, per_batch=50)
    report = _close(run)
    err = capfd.readouterr().err

    assert len(_error_lines(err, "failing")) == 1, err
    assert "ConnectionError: backend unreachable" in _error_lines(err, "failing")[0]
    assert _error_lines(err, "recording") == []
    assert recording.steps == list(range(300))
    assert _ndjson_steps(run.paths.metrics) == list(range(300))

    stats = report.sinks["failing"]
    assert stats["disabled"] is True
    assert stats["delivered"] == 0
    assert stats["undelivered"] + stats["dropped"] == 300
    assert stats["failures"] == failing.attempts == 2
    assert report.sinks["recording"]["delivered"] == 300 and not report.sinks["recording"]["disabled"]
    assert report.complete is False
    summary = json.loads(run.paths.summary.read_text())
    assert summary["sinks"]["failing"]["disabled"] is True
    assert [e["sink"] for e in summary["errors"]] == ["failing"]


def test_sink_whose_start_fails_is_reported_once_and_others_get_everything(tmp_path: Path, capfd) -> None:
    """A sink that cannot start is never written to; it is reported once, everything it
    missed is counted, and the other sink and the NDJSON log are complete."""
    broken, recording = FailingStartSink(), RecordingSink()
    run = start_run(
        "nostart", output_root=str(tmp_path), flush_interval=0.05, sinks=[broken, recording], sink_max_failures=2
    )
    _log_in_batches(run, 200, per_batch=40)
    report = _close(run)
    err = capfd.readouterr().err

    lines = _error_lines(err, "nostart")
    assert len(lines) == 1 and "could not start" in lines[0] and "PermissionError" in lines[0], err
    assert broken.write_calls == 0
    assert recording.steps == list(range(200))
    assert _ndjson_steps(run.paths.metrics) == list(range(200))
    stats = report.sinks["nostart"]
    assert stats["disabled"] is True and stats["delivered"] == 0
    assert stats["undelivered"] + stats["dropped"] == 200
    assert report.complete is False


def test_flaky_sink_is_retried_without_duplicates(tmp_path: Path, capfd) -> None:
    """A sink that fails twice then recovers gets every record exactly once (the retry
    resends only the failed call), is not disabled, and the run is complete."""
    flaky, recording = FlakySink(failures=2), RecordingSink()
    run = start_run("flaky", output_root=str(tmp_path), flush_interval=0.05, sinks=[flaky, recording])
    _log_in_batches(run, 150, per_batch=50)
    report = _close(run)
    err = capfd.readouterr().err

    assert flaky.steps == list(range(150))  # in order, no duplicates, nothing missing
    assert recording.steps == list(range(150))
    stats = report.sinks["flaky"]
    assert (stats["delivered"], stats["failures"], stats["disabled"]) == (150, 2, False)
    assert (stats["undelivered"], stats["dropped"]) == (0, 0)
    assert report.complete is True
    assert len(_error_lines(err, "flaky")) == 1, err
    assert flaky.closed_with == "FINISHED"


def test_slow_sink_drops_only_its_own_records(tmp_path: Path, capfd) -> None:
    """A sink that falls more than sink_max_pending records behind loses records for itself
    only: they are counted as dropped, reported once, and the NDJSON log and the healthy sink
    have everything."""
    slow, recording = SlowSink(delay=0.3), RecordingSink()
    run = start_run(
        "slow", output_root=str(tmp_path), flush_interval=0.05, sinks=[slow, recording], sink_max_pending=50
    )
    _log_in_batches(run, 400, per_batch=20)
    report = _close(run)
    err = capfd.readouterr().err

    stats = report.sinks["slow"]
    assert stats["dropped"] > 0
    assert stats["delivered"] + stats["dropped"] + stats["undelivered"] == 400
    assert stats["delivered"] == len(slow.points)
    assert len(set(slow.steps)) == len(slow.steps) and slow.steps == sorted(slow.steps)
    assert recording.steps == list(range(400))
    assert _ndjson_steps(run.paths.metrics) == list(range(400))
    assert report.sinks["recording"]["dropped"] == 0
    assert report.complete is False
    lines = _error_lines(err, "slow")
    assert len(lines) == 1 and "falling behind" in lines[0], err
    assert _error_lines(err, "recording") == []


def test_concurrent_logging_from_threads_loses_nothing(tmp_path: Path) -> None:
    """Four threads logging 2,000 records each at once: every line of metrics.ndjson is valid
    JSON, all 8,000 records are there (each thread's steps complete and in its own order),
    and a sink receives all of them too."""
    recording = RecordingSink()
    run = start_run("threads", output_root=str(tmp_path), flush_interval=0.05, sinks=[recording], max_queue=2000)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            for step in range(2000):
                run.log_metrics({f"thread{index}/loss": float(step)}, step=step)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CLOSE_LIMIT_S)
    assert errors == [] and not any(t.is_alive() for t in threads)
    report = _close(run)

    lines = run.paths.metrics.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8000
    per_thread: dict[str, list[int]] = {}
    for line in lines:
        record = json.loads(line)
        (key,) = record["metrics"]
        assert record["metrics"][key] == float(record["step"])
        per_thread.setdefault(key, []).append(record["step"])
    assert per_thread == {f"thread{i}/loss": list(range(2000)) for i in range(4)}
    assert len(recording.points) == 8000 and report.records == 8000 and report.complete
