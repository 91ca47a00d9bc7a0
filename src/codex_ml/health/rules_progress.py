"""The progress rules: ``stall``, ``throughput_drop``, ``data_stall``, ``memory_leak``.

They watch time rather than one value: how long since the last training step (checked on the
watchdog's tick, so it fires while the training thread is stuck in C code), tokens/s against
its own recent median, the share of step time spent waiting for data, and the slope of the
process's resident memory from system-metrics samples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from codex_ml.health.events import HealthEvent
from codex_ml.health.rules import NONE, MetricFilter, Param, Rule, fmt
from codex_ml.health.window import RollingMedian

__all__ = ["DataStall", "MemoryLeak", "Stall", "ThroughputDrop"]

MB = 1024.0 * 1024.0


class Stall(Rule):
    """No training step for ``max(factor * median step interval, floor_s)`` seconds; checked on
    each tick, fires once per stall, re-armed by the next step."""

    name = "stall"
    ALLOWED_ACTIONS = ("log", "stop")
    COMMON_DEFAULTS = {"severity": "critical"}
    PARAMS = {
        "metrics": Param(["train/*"], list, "a metrics record with a name matching these is a training step"),
        # 2.5 and 9 s (not 3 and 10): with the watchdog's 0.25 s tick a stall is then reported within
        # max(3 x median step interval, 10 s) of the last step, the bound docs/health.md promises.
        "factor": Param(2.5, float, "multiple of the median interval between steps", 1.0),
        "floor_s": Param(9.0, float, "never fire before this many seconds without a step", 0.0),
        "window": Param(50, int, "intervals in the rolling median", 1),
        "min_steps": Param(3, int, "intervals seen before the rule can fire (start-up is not a stall)", 1),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.watch = MetricFilter(s["metrics"])
        self.intervals = RollingMedian(s["window"])
        self.last_time: float | None = None
        self.last_step: int | None = None
        self.fired = False

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        if not self.watch.any_in(metrics):
            return NONE
        if self.last_time is not None and step != self.last_step:
            self.intervals.add(max(0.0, wall_time - self.last_time))
        self.last_time, self.last_step, self.fired = wall_time, step, False
        return NONE

    def limit(self) -> float | None:
        """Seconds without a step that count as a stall now (None before ``min_steps``)."""
        if len(self.intervals) < self.settings["min_steps"]:
            return None
        return max(self.settings["factor"] * self.intervals.median(), self.settings["floor_s"])

    def on_tick(self, now: float) -> list[HealthEvent]:
        if self.fired or self.last_time is None:
            return NONE
        limit = self.limit()
        silent = now - self.last_time
        if limit is None or silent <= limit:
            return NONE
        self.fired = True
        return [self.event(now, self.last_step, None, silent, limit,
                           f"no training step for {silent:.1f} s after step {self.last_step} "
                           f"(limit {limit:.1f} s = max({fmt(self.settings['factor'])} x median step interval, "
                           f"{fmt(self.settings['floor_s'])} s))")]


class ThroughputDrop(Rule):
    """Tokens/s below ``fraction`` of its rolling median for ``patience`` records in a row; once
    per drop, re-armed by a value back above the line. Values below the line stay out of the
    median until the rule fires, so ``patience`` may be as long as the window."""

    name = "throughput_drop"
    ALLOWED_ACTIONS = ("log", "stop")
    PARAMS = {
        "metric": Param("train/tokens_per_s", str, "the throughput metric"),
        "fraction": Param(0.5, float, "fires below this fraction of the rolling median", 0.0),
        "patience": Param(50, int, "records in a row below the line", 1),
        "window": Param(100, int, "values in the rolling median", 3),
        "warmup": Param(20, int, "values seen before the rule can fire", 1),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.metric, self.fraction, self.patience, self.warmup = s["metric"], s["fraction"], s["patience"], s["warmup"]
        self.window = RollingMedian(s["window"])
        self.seen = self.below = 0
        self.fired = False
        self.settle = 0  # values to add after firing before it may re-arm (the median moves to the new level)

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        value = metrics.get(self.metric)
        if value is None or value != value or value in (float("inf"), float("-inf")):
            return NONE
        out = NONE
        self.seen += 1
        if self.seen > self.warmup:
            line = self.fraction * self.window.median()
            if value < line:
                self.below += 1
                if self.below >= self.patience and not self.fired:
                    self.fired, self.settle = True, self.window.size // 2
                    out = [self.event(wall_time, step, self.metric, value, line,
                                      f"{self.metric} = {fmt(value)} at step {step}, below {fmt(self.fraction)} x its "
                                      f"rolling median ({fmt(line)}) for {self.below} records")]
                if not self.fired:
                    return out  # the baseline holds while a drop builds up, or a long one would hide itself
            elif self.settle == 0:
                self.below, self.fired = 0, False
            else:
                self.below = 0
        self.settle = max(0, self.settle - 1)
        self.window.add(value)  # after firing, the new level joins the window: reported once, then re-armed
        return out


class DataStall(Rule):
    """The share of step time spent waiting for data, summed over the last ``window`` records,
    above ``threshold``; once per episode, re-armed when the share falls below it."""

    name = "data_stall"
    ALLOWED_ACTIONS = ("log", "stop")
    PARAMS = {
        "wait_metric": Param("time/data_wait_s", str, "seconds the step waited for its batch"),
        "step_metric": Param("time/step_s", str, "seconds the whole step took"),
        "threshold": Param(0.5, float, "share of step time (0..1) that fires", 0.0),
        "window": Param(20, int, "records summed (the rule needs a full window)", 1),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.wait_metric, self.step_metric, self.threshold = s["wait_metric"], s["step_metric"], s["threshold"]
        self.pairs: deque[tuple[float, float]] = deque(maxlen=s["window"])
        self.wait_sum = self.step_sum = 0.0
        self.fired = False

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        wait, total = metrics.get(self.wait_metric), metrics.get(self.step_metric)
        if wait is None or total is None or not (0.0 <= wait < float("inf") and 0.0 <= total < float("inf")):
            return NONE
        if len(self.pairs) == self.pairs.maxlen:
            old_wait, old_total = self.pairs[0]
            self.wait_sum -= old_wait
            self.step_sum -= old_total
        self.pairs.append((wait, total))
        self.wait_sum += wait
        self.step_sum += total
        if len(self.pairs) < (self.pairs.maxlen or 0) or self.step_sum <= 0.0:
            return NONE
        share = min(1.0, self.wait_sum / self.step_sum)
        if share <= self.threshold:
            self.fired = False
            return NONE
        if self.fired:
            return NONE
        self.fired = True
        return [self.event(wall_time, step, self.wait_metric, share, self.threshold,
                           f"data loading took {share:.0%} of step time over the last {len(self.pairs)} records "
                           f"(threshold {self.threshold:.0%}) at step {step}")]


class MemoryLeak(Rule):
    """Resident memory rising faster than ``threshold_mb_per_min`` (least-squares slope over the
    last ``window`` system samples, after ``warmup`` samples); needs ``--system-metrics``."""

    name = "memory_leak"
    ALLOWED_ACTIONS = ("log", "stop")
    PARAMS = {
        "metric": Param("system/process/rss_bytes", str, "the resident-memory metric of the system samples"),
        "threshold_mb_per_min": Param(50.0, float, "slope that fires, MiB per minute", 0.0),
        "min_growth_mb": Param(100.0, float, "and the window must have grown at least this much, MiB", 0.0),
        "window": Param(20, int, "samples in the fit (at the default 15 s interval: 5 minutes)", 3),
        "warmup": Param(4, int, "first samples ignored (allocators and caches fill up at start)", 0),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.metric = s["metric"]
        self.points: deque[tuple[float, float]] = deque(maxlen=s["window"])
        self.seen = 0
        self.origin: float | None = None
        self.fired = False

    def on_system(self, index: int, wall_time: float, values: Mapping[str, float]) -> list[HealthEvent]:
        rss = values.get(self.metric)
        if rss is None or not 0.0 <= rss < float("inf"):
            return NONE
        self.seen += 1
        if self.seen <= self.settings["warmup"]:
            return NONE
        if self.origin is None:
            self.origin = wall_time  # times relative to the first sample: no cancellation at 1.8e9 s
        self.points.append((wall_time - self.origin, rss / MB))
        if len(self.points) < (self.points.maxlen or 0):
            return NONE
        slope = _slope(self.points) * 60.0  # MiB per minute
        growth = self.points[-1][1] - self.points[0][1]
        threshold = self.settings["threshold_mb_per_min"]
        if slope <= threshold / 2:  # hysteresis: re-arm well below the line, not at its edge
            self.fired = False
        if self.fired or slope <= threshold or growth < self.settings["min_growth_mb"]:
            return NONE
        self.fired = True
        # Step None: system samples have none; the monitor names the last training step it saw.
        return [self.event(wall_time, None, self.metric, slope, threshold,
                           f"resident memory grows {slope:.1f} MiB/min over the last {len(self.points)} samples "
                           f"(+{growth:.0f} MiB; threshold {fmt(threshold)} MiB/min)")]


def _slope(points: deque[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points (y per second); 0 when every t is the same."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0.0:
        return 0.0
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var
