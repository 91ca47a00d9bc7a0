"""The system telemetry sampler end to end: real psutil, real /proc, a real run.

Samples are taken at the 0.1 s minimum so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import pytest

from codex_ml.monitoring.collectors import Collector
from codex_ml.monitoring.collectors.cpu import CpuCollector
from codex_ml.monitoring.system_metrics import (
    PSUTIL_MISSING,
    SystemMetricsLogger,
    flatten_sample,
    resolve_system_metrics_path,
)
from codex_ml.tracking import Sink, start_run
from codex_ml.rundir.encoding import decode_number
from codex_ml.rundir.reader import ReadReport, iter_records

SRC = str(Path(__file__).resolve().parents[2] / "src")
THREAD_NAME = "codex-ml-system-metrics"


def _records(path: Path) -> list[dict[str, Any]]:
    report = ReadReport(str(path))
    records = list(iter_records(path, report))
    assert not report.bad_lines and not report.torn_tail
    return records


def _run_for(path: Path, seconds: float, **options: Any) -> SystemMetricsLogger:
    options.setdefault("include_gpu", False)
    logger = SystemMetricsLogger(path, options.pop("interval", 0.1), **options).start()
    time.sleep(seconds)
    logger.stop()
    return logger


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _python(code: str, env_path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([env_path, SRC])}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


# -- the record -----------------------------------------------------------------------
def test_schema_fields_present_with_sane_ranges(tmp_path: Path) -> None:
    path = tmp_path / "sys.jsonl"
    began = time.time()
    logger = _run_for(path, 0.45)
    records = _records(path)
    assert logger.samples_written == len(records) >= 3
    assert [r["sample"] for r in records] == list(range(len(records)))
    for record in records:
        assert record["v"] == 1 and "rank" not in record
        assert began <= record["time"] <= time.time()
        cpu = record["cpu"]
        assert 0.0 <= cpu["percent"] <= 100.0
        assert cpu["count"] == len(cpu["per_core"]) == psutil.cpu_count()
        assert all(0.0 <= value <= 100.0 for value in cpu["per_core"])
        memory = record["memory"]
        assert memory["total_bytes"] == psutil.virtual_memory().total
        assert 0 < memory["used_bytes"] <= memory["total_bytes"]
        assert 0 < memory["available_bytes"] <= memory["total_bytes"]
        assert 0.0 < memory["percent"] <= 100.0
        assert 0 <= memory["swap_used_bytes"] <= memory["swap_total_bytes"]
        assert set(record["load"]) == {"1m", "5m", "15m"} and min(record["load"].values()) >= 0
        for group in ("disk", "network"):
            assert record[group] and all(v >= 0 for v in record[group].values()), group
        process = record["process"]
        main = process["processes"][0]
        assert (main["pid"], main["role"]) == (os.getpid(), "main")
        assert process["count"] == len(process["processes"])
        assert process["rss_bytes"] >= main["rss_bytes"] > 0
        assert process["threads"] >= 2  # this thread and the sampler's
        assert process["fds"] >= process["open_files"] >= 1  # the metrics file itself
        if os.access("/proc/pressure/cpu", os.R_OK):
            assert 0.0 <= record["pressure"]["cpu"]["some_avg10"] <= 100.0
        else:
            assert "pressure" not in record
        assert "gpu" not in record


def test_rank_is_recorded_when_given(tmp_path: Path) -> None:
    path = tmp_path / "rank3.jsonl"
    _run_for(path, 0.15, rank=3)
    assert {r["rank"] for r in _records(path)} == {3}


def test_children_appear_with_their_cpu(tmp_path: Path) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        path = tmp_path / "children.jsonl"
        _run_for(path, 0.7, interval=0.2)
        last = _records(path)[-1]["process"]
    finally:
        for child in busy:
            child.kill()
            child.wait()
    rows = {row["pid"]: row for row in last["processes"]}
    for child in busy:
        assert rows[child.pid]["role"] == "child"
        assert rows[child.pid]["cpu_percent"] > 0, rows[child.pid]
    # The tree's total includes both children (a rounding-sized tolerance: each figure is rounded to 0.1).
    assert last["cpu_percent"] >= sum(rows[c.pid]["cpu_percent"] for c in busy) - 0.1 * (len(busy) + 1)


def test_non_finite_values_are_written_as_strings(tmp_path: Path) -> None:
    class Odd(Collector):
        name = "odd"

        def collect(self) -> None:
            self._data = {"nan": math.nan, "inf": math.inf, "neg": -math.inf, "ok": 1.5}

    path = tmp_path / "odd.jsonl"
    _run_for(path, 0.15, collectors=[Odd()])
    odd = _records(path)[0]["odd"]
    assert odd == {"nan": "NaN", "inf": "Infinity", "neg": "-Infinity", "ok": 1.5}
    flat = flatten_sample(_records(path)[0])
    assert math.isnan(flat["system/odd/nan"]) and flat["system/odd/neg"] == -math.inf


# -- lifecycle ----------------------------------------------------------------------------
def test_stop_is_prompt_even_with_a_long_interval(tmp_path: Path) -> None:
    logger = SystemMetricsLogger(tmp_path / "slow.jsonl", 60.0, include_gpu=False).start()
    time.sleep(0.2)
    began = time.monotonic()
    logger.stop()
    assert time.monotonic() - began < 1.0
    assert not _sampler_threads()
    assert logger.samples_written == 1  # the stretch before stop() is sampled once


def test_interval_below_minimum_is_raised_with_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Said once, as a [monitoring] line: not also as a Python UserWarning with its source line."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Python warning fails the test
        logger = SystemMetricsLogger(tmp_path / "fast.jsonl", 0.05)
    assert logger.interval == 0.1
    err = capfd.readouterr().err
    assert err.count("below the minimum") == 1
    assert "[monitoring] system-metrics: interval 0.05s is below the minimum; using 0.1s" in err
    with pytest.raises(ValueError, match="non-negative number of seconds"):
        SystemMetricsLogger(tmp_path / "bad.jsonl", -1)


def test_start_is_idempotent_and_stop_is_safe(tmp_path: Path) -> None:
    logger = SystemMetricsLogger(tmp_path / "idem.jsonl", 0.1, include_gpu=False)
    logger.stop()  # before start: nothing to do
    assert logger.start() is logger and logger.start() is logger
    assert len(_sampler_threads()) == 1
    time.sleep(0.15)
    logger.stop()
    logger.stop()
    assert not _sampler_threads() and logger.samples_written >= 1
    assert logger.path == tmp_path / "idem.jsonl" and logger.gpu_enabled is False


def test_context_manager(tmp_path: Path) -> None:
    with SystemMetricsLogger(tmp_path / "ctx.jsonl", 0.1, include_gpu=False) as logger:
        assert _sampler_threads() and _sampler_threads()[0].daemon
        time.sleep(0.25)
    assert not _sampler_threads()
    assert len(_records(logger.path)) == logger.samples_written >= 2
    assert logger.cpu_seconds > 0


def test_torn_last_line_is_readable_and_repaired_on_restart(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    _run_for(path, 0.25)
    complete = _records(path)
    with open(path, "ab") as handle:
        handle.write(b'{"v": 1, "time": 17000, "sample": 9, "cpu": {"perc')  # killed mid-write
    report = ReadReport(str(path))
    assert [r["sample"] for r in iter_records(path, report)] == [r["sample"] for r in complete]
    assert report.torn_tail and not report.bad_lines
    _run_for(path, 0.15)  # a resumed run cuts the torn tail and continues the numbering
    samples = [r["sample"] for r in _records(path)]
    assert samples == list(range(len(samples))) and len(samples) > len(complete)


# -- failures never reach training ----------------------------------------------------
def test_failing_collector_is_reported_once_and_others_still_written(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    class Boom(Collector):
        name = "boom"

        def collect(self) -> None:
            raise RuntimeError("sensor on fire")

    class NoStart(Collector):
        name = "nostart"

        def start(self) -> None:
            raise OSError("no such sensor")

    path = tmp_path / "boom.jsonl"
    _run_for(path, 0.45, collectors=[Boom(), NoStart(), CpuCollector()])
    records = _records(path)
    assert len(records) >= 3 and all("cpu" in r and "boom" not in r for r in records)
    err = capfd.readouterr().err
    assert err.count("[monitoring-error] system-metrics: boom: RuntimeError: sensor on fire") == 1
    assert err.count("[monitoring-error] system-metrics: nostart: OSError: no such sensor") == 1


def test_unwritable_path_is_reported_and_training_goes_on(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("x")
    logger = SystemMetricsLogger(tmp_path / "a_file" / "sys.jsonl", 0.1, include_gpu=False).start()
    logger.stop()
    assert not _sampler_threads() and logger.samples_written == 0
    assert "[monitoring-error] system-metrics: cannot write" in capfd.readouterr().err


def test_missing_psutil_prints_one_line_and_does_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys

            class BlockPsutil:
                def find_spec(self, name, path=None, target=None):
                    if name == "psutil" or name.startswith("psutil."):
                        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                    return None

            sys.meta_path.insert(0, BlockPsutil())
            """
        )
    )
    code = textwrap.dedent(
        """
        import threading, time
        from codex_ml.monitoring.system_metrics import SystemMetricsLogger
        logger = SystemMetricsLogger("out/sys.jsonl", 0.1).start()
        logger.start()
        time.sleep(0.3)
        logger.stop()
        print(logger.samples_written, threading.active_count())
        """
    )
    result = _python(code, str(blocker), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]
    assert result.stderr.strip().splitlines() == [f"[monitoring-error] system-metrics: {PSUTIL_MISSING}"]
    assert not (tmp_path / "out" / "sys.jsonl").exists()


def test_import_stays_light(tmp_path: Path) -> None:
    code = (
        "import sys, codex_ml.monitoring, codex_ml.monitoring.system_metrics\n"
        "print(sorted(m for m in ('torch', 'psutil', 'pynvml', 'numpy') if m in sys.modules))"
    )
    result = _python(code, SRC, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- forwarding to a run ----------------------------------------------------------------
class Recorder(Sink):
    """Keeps every system point it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.points: list[tuple[int, float, dict[str, float]]] = []

    def write_system(self, points: list[tuple[int, float, dict[str, float]]]) -> None:
        self.points.extend(points)


def test_samples_are_forwarded_to_the_run(tmp_path: Path) -> None:
    recorder = Recorder()
    run = start_run("sys", output_root=tmp_path, flush_interval=0.05, sinks=[recorder])
    path = run.paths.root / "system_metrics.jsonl"
    logger = _run_for(path, 0.35, run=run)
    run.close()
    records = _records(path)
    assert [p[0] for p in recorder.points] == [r["sample"] for r in records] == list(range(logger.samples_written))
    for (index, wall_time, values), record in zip(recorder.points, records):
        assert wall_time == record["time"]
        assert values == flatten_sample(record)
        assert {"system/cpu/percent", "system/memory/used_bytes", "system/process/rss_bytes"} <= set(values)
        assert all(name.startswith("system/") for name in values)


def test_start_run_with_system_metrics_auto(tmp_path: Path) -> None:
    recorder = Recorder()
    run = start_run("auto", output_root=tmp_path, flush_interval=0.05, sinks=[recorder],
                    system_metrics="AUTO", system_metrics_interval=0.1)  # fmt: skip
    assert isinstance(run.system_metrics, SystemMetricsLogger)
    time.sleep(0.35)
    run.close()
    assert not _sampler_threads()
    records = _records(run.paths.root / "system_metrics.jsonl")
    forwarded = [p[0] for p in recorder.points]
    assert len(forwarded) >= 2 and forwarded == [r["sample"] for r in records][: len(forwarded)]


# -- the helpers ----------------------------------------------------------------------
def test_resolve_system_metrics_path(tmp_path: Path) -> None:
    assert resolve_system_metrics_path(None, tmp_path) is None
    assert resolve_system_metrics_path("", tmp_path) is None
    assert resolve_system_metrics_path("AUTO", tmp_path) == tmp_path / "system_metrics.jsonl"
    assert resolve_system_metrics_path("auto", tmp_path) == tmp_path / "system_metrics.jsonl"
    assert resolve_system_metrics_path("logs/sys.jsonl", tmp_path) == tmp_path / "logs" / "sys.jsonl"
    assert resolve_system_metrics_path("/var/x.jsonl", tmp_path) == Path("/var/x.jsonl")


def test_flatten_sample_names() -> None:
    record = {
        "v": 1, "time": 1.0, "sample": 4, "rank": 1,
        "cpu": {"percent": 50.0, "per_core": [40.0, 60.0], "count": 2},
        "pressure": {"io": {"some_avg10": 1.5}},
        "process": {"count": 2, "rss_bytes": 10, "processes": [{"pid": 7, "rss_bytes": 5}]},
        "gpu": [{"index": 1, "nvml_index": 3, "uuid": "GPU-x", "name": "H200", "utilization_percent": 99,
                 "power_w": "NaN"}],
    }  # fmt: skip
    flat = flatten_sample(record)
    power = flat.pop("system/gpu/1/power_w")
    assert math.isnan(power) and decode_number("NaN") != decode_number("NaN")
    assert flat == {
        "system/cpu/percent": 50.0, "system/cpu/per_core/0": 40.0, "system/cpu/per_core/1": 60.0,
        "system/cpu/count": 2.0, "system/pressure/io/some_avg10": 1.5, "system/process/count": 2.0,
        "system/process/rss_bytes": 10.0, "system/gpu/1/utilization_percent": 99.0,
    }  # fmt: skip
