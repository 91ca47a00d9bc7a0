"""HealthMonitor: routing by record kind, exclusion, a broken rule switched off, two threads at once."""

from __future__ import annotations

import math
import threading
from typing import Any

from codex_ml.health import HealthConfig, HealthMonitor
from codex_ml.health.rules import Rule
from codex_ml.rundir.records import METRICS, SYSTEM, TEXT


def test_routes_metrics_system_ticks_and_sink_states() -> None:
    monitor = HealthMonitor(HealthConfig().with_overrides(["health.stall.floor_s=5", "health.memory_leak.warmup=0",
                                                           "health.memory_leak.window=3"]))
    events = []
    for step in range(10):
        events += monitor.observe((METRICS, step, 1000.0 + step, {"train/loss": 2.0}))
    events += monitor.observe((METRICS, 10, 1010.0, {"train/loss": math.nan}))
    events += monitor.observe((TEXT, 10, 1010.0, "sample", "hello"))  # ignored kind
    for index in range(3):
        events += monitor.observe((SYSTEM, index, 1011.0 + 15 * index, {"system/process/rss_bytes": 2**30 * (1 + index)}))
    events += monitor.tick(1100.0)
    events += monitor.sink_status("mlflow", "disabled", "3 retries failed", now=1101.0)
    assert [(e.rule, e.step) for e in events] == [("nonfinite", 10), ("memory_leak", 10), ("stall", 10),
                                                  ("sink_down", 10)]
    assert monitor.count == 4 and "3 retries failed" in events[-1].message


def test_exclude_leaves_rules_out() -> None:
    monitor = HealthMonitor(exclude=["nonfinite"])
    assert "nonfinite" not in monitor.names()
    assert monitor.observe((METRICS, 1, 1.0, {"train/loss": math.nan})) == []
    monitor.exclude(["spike", "stall"])
    assert {"spike", "stall", "nonfinite"}.isdisjoint(monitor.names())


class Broken(Rule):
    name = "broken"

    def on_metrics(self, step: int, wall_time: float, metrics: Any) -> list:
        raise RuntimeError("bug in a plugin")


def test_a_raising_rule_is_switched_off_and_the_others_go_on() -> None:
    monitor = HealthMonitor(rules=[Broken(), *HealthConfig().build_rules()])
    first = monitor.observe((METRICS, 1, 1.0, {"train/loss": math.nan}))
    assert [e.rule for e in first] == ["nonfinite"]
    assert monitor.errors == [("broken", "RuntimeError: bug in a plugin")] and "broken" not in monitor.names()


def test_writer_and_watchdog_threads_at_once() -> None:
    """A writer thread observing records while a watchdog ticks: no lost or doubled events, no errors."""
    monitor = HealthMonitor(HealthConfig().with_overrides(["health.stall.floor_s=0.5"]))
    events: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def writer() -> None:
        barrier.wait()
        for step in range(20_000):
            value = math.nan if step % 1000 == 500 else 2.0 + (step % 7) * 0.01
            out = monitor.observe((METRICS, step, 1000.0 + step * 0.001, {"train/loss": value}))
            with lock:
                events.extend(out)

    def watchdog() -> None:
        barrier.wait()
        for tick in range(20_000):
            out = monitor.tick(1000.0 + tick * 0.001)
            with lock:
                events.extend(out)

    threads = [threading.Thread(target=writer), threading.Thread(target=watchdog)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.errors == []
    nonfinite = [e.step for e in events if e.rule == "nonfinite"]
    assert nonfinite == [500 + 1000 * k for k in range(20)]
    assert monitor.count == len(events)
