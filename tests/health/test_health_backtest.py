"""backtest over real run directories written by codex_ml.tracking.start_run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from codex_ml.health import HealthConfig, read_events
from codex_ml.health.backtest import BacktestInputError, backtest, backtest_report
from codex_ml.tracking import start_run


def _loss(step: int) -> float:
    return 2.0 + 0.05 * math.sin(step * 1.7)


def test_nan_at_step_30_is_exactly_one_nonfinite_event(tmp_path: Path) -> None:
    with start_run("nan", output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(60):
            loss = math.nan if step == 30 else _loss(step)
            run.log_metrics({"train/loss": loss, "train/grad_norm": 1.0, "train/tokens_per_s": 1000.0}, step=step)
            run.log_metrics({"val/loss": _loss(step)}, step=step) if step % 20 == 0 else None
    events = backtest(run.paths.root)
    assert [(e.rule, e.step, e.metric) for e in events] == [("nonfinite", 30, "train/loss")]
    assert math.isnan(events[0].value) and events[0].severity == "critical"
    # The live run raised the same event (one implementation for both).
    assert [e.key() for e in read_events(run.paths.events)] == [e.key() for e in events]


def test_stall_and_spike_over_a_real_run(tmp_path: Path) -> None:
    with start_run("stall", output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(120):
            run.log_metrics({"train/loss": 40.0 if step == 100 else _loss(step)}, step=step)
            if step == 110:
                time.sleep(0.6)  # the gap the stall rule must see between steps 110 and 111
    config = HealthConfig().with_overrides(["health.stall.floor_s=0.4"])
    report = backtest_report(run.paths.root, config)
    assert [(e.rule, e.step) for e in report.events] == [("spike", 100), ("stall", 110)]
    # 120 steps plus the live run's health/events count of its spike (its stall limit was 10 s).
    assert report.events[1].value >= 0.6 and report.metrics_records == 121
    assert backtest(run.paths.root, HealthConfig.from_mapping({"enabled": False})) == []


def test_memory_leak_from_the_system_metrics_file(tmp_path: Path) -> None:
    with start_run("leak", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"train/loss": 2.0}, step=1)
    start = time.time()
    lines = [{"v": 1, "time": start + 15 * i, "sample": i, "process": {"rss_bytes": (500 + 40 * i) * 2**20}}
             for i in range(30)]
    run.paths.system_metrics.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    report = backtest_report(run.paths.root)
    assert report.system_samples == 30 and report.system_file == str(run.paths.system_metrics)
    assert [(e.rule, e.step, e.metric) for e in report.events] == [("memory_leak", 1, "system/process/rss_bytes")]
    assert report.events[0].value == pytest.approx(160.0)  # 40 MiB per 15 s


def test_recorded_events_are_read_back(tmp_path: Path) -> None:
    with start_run("recorded", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"train/loss": 2.0}, step=1)
    event = {"time": 1.0, "step": 1, "rule": "nonfinite", "severity": "critical", "metric": "train/loss",
             "value": "NaN", "threshold": None, "message": "train/loss is nan", "action": "log"}
    run.paths.events.write_text(json.dumps(event) + "\n", encoding="utf-8")
    report = backtest_report(run.paths.root)
    assert report.events == [] and [e.rule for e in report.recorded] == ["nonfinite"]
    assert report.to_dict()["recorded_events"] == 1


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BacktestInputError, match="no such run directory"):
        backtest(tmp_path / "missing")
    with pytest.raises(BacktestInputError, match="no metrics.ndjson"):
        backtest(tmp_path)
