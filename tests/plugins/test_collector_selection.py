"""Choosing system-metric collectors by name: the flag and the tracking key, the default set,
and a collector plugin that cannot be created (left out, reported, sampling goes on)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_ml.monitoring.system_metrics import SystemMetricsLogger, collectors_by_name
from codex_ml.tracking.config import TrackingConfig, TrackingConfigError
from codex_ml.tracking.flags import tracking_config_from


def test_no_names_is_the_default_set() -> None:
    """Unset (None or []) keeps today's collectors, in record order."""
    expected = ["cpu", "memory", "load", "pressure", "disk", "network", "process"]
    assert [c.name for c in collectors_by_name(None, include_gpu=False)] == expected
    assert [c.name for c in collectors_by_name([], include_gpu=False)] == expected


def test_names_pick_those_collectors_in_that_order() -> None:
    """The built-in gpu follows the process collector it attributes memory with."""
    chosen = collectors_by_name(["load", "process", "gpu"])
    assert [c.name for c in chosen] == ["load", "process", "gpu"]
    assert chosen[2]._pids() == chosen[1].pids


def test_flag_sets_the_tracking_field_and_refuses_unknown_names() -> None:
    """--system-metrics-collector is repeatable; an unknown name lists the registered collectors."""
    config = tracking_config_from({"system_metrics_collectors": ["load", "cpu"]})
    assert config.system_metrics_collectors == ["load", "cpu"]
    with pytest.raises(TrackingConfigError) as caught:
        TrackingConfig(system_metrics_collectors=["cpu", "nope"])
    message = str(caught.value)
    assert message.startswith("--system-metrics-collector (system_metrics.collectors) unknown system_metric_collectors")
    assert "cpu, disk, gpu, load, memory, network, pressure, process" in message


def test_collector_that_cannot_be_created_is_left_out_once(make_dist: Callable[..., Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A plugin whose constructor raises is reported as a [monitoring-error] line; the others sample."""
    make_dist("codex-bad-collector", {"codex_ml.system_metric_collectors": {"boom": "badcollector:Boom"}}, {
        "badcollector": """
            from codex_ml.monitoring.collectors import Collector
            CODEX_ML_PLUGIN_API = 1
            class Boom(Collector):
                def __init__(self):
                    raise RuntimeError("no sensor here")
        """})  # fmt: skip
    path = tmp_path / "sm.jsonl"
    with SystemMetricsLogger(path, interval=0.1, collector_names=["boom", "load"], include_gpu=False):
        pass
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    assert samples and all("load" in s and "boom" not in s for s in samples)
    err = capsys.readouterr().err
    assert err.count("collector boom: RuntimeError: no sensor here (left out of the samples)") == 1
