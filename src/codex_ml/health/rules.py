"""The rule protocol and the per-value rules: ``nonfinite``, ``spike``, ``grad_explosion``, ``sink_down``.

A rule is a small stateful object fed by :class:`codex_ml.health.monitor.HealthMonitor` (which
holds its lock around every call, so a rule needs no locking of its own). It returns the events
it raises; an empty list (the shared :data:`NONE`) most of the time. Every rule fires once per
excursion and re-arms when its condition clears, so a NaN that stays NaN is one event, not one
per step. The progress rules (stall, throughput, data wait, memory) are in ``rules_progress``.

A plugin rule (entry-point group ``codex_ml.health_rules``) subclasses :class:`Rule`, sets
``name`` and ``PARAMS`` and overrides the hooks it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from codex_ml.health.events import ACTIONS, HealthEvent
from codex_ml.health.window import RollingMedian

__all__ = ["NONE", "GradExplosion", "MetricFilter", "NonFinite", "Param", "Rule", "SinkDown", "Spike"]

#: What a rule returns when nothing fired (shared: callers never mutate it).
NONE: list[HealthEvent] = []


@dataclass(frozen=True)
class Param:
    """One setting of a rule: default, type (``float``, ``int``, ``bool``, ``str``, ``list``,
    ``float | None``), one line of documentation and, for numbers, the smallest value allowed."""

    default: Any
    kind: Any
    doc: str
    minimum: float | None = None


#: The settings every rule has (docs/health.md).
COMMON_PARAMS: dict[str, Param] = {
    "enabled": Param(True, bool, "evaluate this rule"),
    "action": Param("log", str, "what the run does when it fires: log | stop | skip | rollback"),
    "severity": Param("warning", str, "warning | critical"),
}


class Rule:
    """Base class: the settings, the hooks (each returns a list of events) and an event builder."""

    #: The rule's name under ``health:`` (``health.<name>.<key>=value``).
    name: ClassVar[str] = ""
    #: The rule's own settings (COMMON_PARAMS are added to every rule).
    PARAMS: ClassVar[dict[str, Param]] = {}
    #: Defaults of common settings that differ for this rule (e.g. severity critical).
    COMMON_DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: The actions that make sense for it (skip/rollback need a training step to act on).
    ALLOWED_ACTIONS: ClassVar[tuple[str, ...]] = ACTIONS

    def __init__(self, **settings: Any) -> None:
        """Store the settings (defaults for the ones left out); HealthConfig has validated them."""
        merged = {**self.defaults(), **settings}
        self.settings = merged
        self.action: str = merged["action"]
        self.severity: str = merged["severity"]

    @classmethod
    def params(cls) -> dict[str, Param]:
        """Every setting of this rule, the common ones first."""
        common = {k: Param(cls.COMMON_DEFAULTS.get(k, p.default), p.kind, p.doc) for k, p in COMMON_PARAMS.items()}
        return {**common, **cls.PARAMS}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{setting: default}``."""
        return {key: param.default for key, param in cls.params().items()}

    @classmethod
    def check(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(key, problem)`` for settings that have the right type but do not fit together."""
        return []

    # -- hooks: the monitor calls these; the defaults do nothing -----------------------------------
    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        """One metrics record (``(METRICS, step, time, {name: value})``)."""
        return NONE

    def on_system(self, index: int, wall_time: float, values: Mapping[str, float]) -> list[HealthEvent]:
        """One system-metrics sample, flat ``system/...`` names."""
        return NONE

    def on_tick(self, now: float) -> list[HealthEvent]:
        """Called about once a second (live) or at each record's time (backtest)."""
        return NONE

    def on_sink_status(self, sink: str, state: str, detail: str, now: float) -> list[HealthEvent]:
        """A sink changed state: ``ok``, ``dropping`` or ``disabled``."""
        return NONE

    def event(self, wall_time: float, step: int | None, metric: str | None, value: float | None,
              threshold: float | None, message: str) -> HealthEvent:
        """An event of this rule with its configured action and severity."""
        return HealthEvent(wall_time, step, self.name, self.severity, metric, value, threshold, message, self.action)


class MetricFilter:
    """Which metric names a rule watches: glob patterns, the answer cached per name (the set of
    names a run logs is small, so after the first records a lookup is one dict access)."""

    __slots__ = ("patterns", "_cache", "_literal")

    def __init__(self, patterns: list[str] | str) -> None:
        """Watch names matching any of ``patterns`` (fnmatch globs, case-sensitive)."""
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self._cache: dict[str, bool] = {}
        # Plain names need no matching at all: look them up in the record (the common case).
        self._literal = not any(ch in p for p in self.patterns for ch in "*?[")

    def __call__(self, name: str) -> bool:
        hit = self._cache.get(name)
        if hit is None:
            hit = self._cache[name] = any(fnmatchcase(name, pattern) for pattern in self.patterns)
        return hit

    def any_in(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics`` holds a watched name (stops at the first)."""
        cache = self._cache
        for name in metrics:
            if cache[name] if name in cache else self(name):
                return True
        return False

    def select(self, metrics: Mapping[str, float]) -> list[str]:
        """The watched names present in ``metrics``, in record order (patterns' order for plain names)."""
        if self._literal:
            return [name for name in self.patterns if name in metrics]
        cache = self._cache
        return [name for name in metrics if (cache[name] if name in cache else self(name))]


def fmt(value: float | None) -> str:
    """A number for a message: 4 significant digits, NaN/inf as Python spells them."""
    return "none" if value is None else f"{value:.4g}"


class NonFinite(Rule):
    """Any NaN or ±Inf in a watched metric; once per metric until a finite value comes back."""

    name = "nonfinite"
    PARAMS = {"metrics": Param(["*/loss", "train/grad_norm"], list, "glob patterns of the metrics watched")}
    COMMON_DEFAULTS = {"severity": "critical"}

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.watch = MetricFilter(self.settings["metrics"])
        self.bad: set[str] = set()  # metrics now non-finite (fired; re-armed by a finite value)

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        out = NONE
        for name in self.watch.select(metrics):
            value = metrics[name]
            if math.isfinite(value):
                if self.bad:
                    self.bad.discard(name)
            elif name not in self.bad:
                self.bad.add(name)
                event = self.event(wall_time, step, name, value, None, f"{name} is {value} at step {step}")
                out = [event] if out is NONE else [*out, event]
        return out


class Spike(Rule):
    """A robust z-score ``(x - median) / (1.4826 * MAD)`` of a watched metric against its rolling
    window above ``threshold``; once per excursion (re-armed when z falls back below it)."""

    name = "spike"
    PARAMS = {
        "metrics": Param(["train/loss"], list, "glob patterns of the metrics watched (each has its own window)"),
        "threshold": Param(10.0, float, "robust z-score that fires (measured: docs/health.md)", 0.0),
        "window": Param(100, int, "values in the rolling median/MAD window", 3),
        "warmup": Param(50, int, "values seen before the rule can fire", 1),
        "direction": Param("up", str, "up | down | both: which side of the median counts"),
        "min_scale": Param(1e-3, float, "floor of the MAD scale, relative to |median| (a flat curve has MAD 0)", 0.0),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.watch = MetricFilter(s["metrics"])
        self.threshold, self.window, self.warmup = s["threshold"], s["window"], s["warmup"]
        self.min_scale, self.direction = s["min_scale"], s["direction"]
        self.windows: dict[str, RollingMedian] = {}
        self.seen: dict[str, int] = {}
        self.firing: set[str] = set()

    @classmethod
    def check(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        if settings["direction"] not in ("up", "down", "both"):
            return [("direction", f"expected one of 'up', 'down', 'both', got {settings['direction']!r}")]
        return []

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        out = NONE
        for name in self.watch.select(metrics):
            value = metrics[name]
            if math.isfinite(value):  # non-finite values are nonfinite's
                event = self._observe(name, value, step, wall_time)
                if event is not None:
                    out = [event] if out is NONE else [*out, event]
        return out

    def _observe(self, name: str, value: float, step: int, wall_time: float) -> HealthEvent | None:
        window = self.windows.get(name)
        if window is None:
            window = self.windows[name] = RollingMedian(self.window)
        seen = self.seen[name] = self.seen.get(name, 0) + 1
        event = None
        if seen > self.warmup:
            z, median = self._zscore(window, value)
            if self._exceeds(z):
                if name not in self.firing:
                    self.firing.add(name)
                    event = self.event(wall_time, step, name, value, self.threshold,
                                       f"{name} = {fmt(value)} at step {step}: robust z {z:+.1f} against its rolling "
                                       f"median {fmt(median)} (threshold {fmt(self.threshold)})")
            else:
                self.firing.discard(name)
        window.add(value)  # the spike joins the window: a lasting level shift stops firing as it fills
        return event

    def _zscore(self, window: RollingMedian, value: float) -> tuple[float, float]:
        median = window.median()
        scale = max(1.4826 * window.mad(), self.min_scale * abs(median), 1e-12)
        return (value - median) / scale, median

    def _exceeds(self, z: float) -> bool:
        if self.direction == "up":
            return z > self.threshold
        if self.direction == "down":
            return -z > self.threshold
        return abs(z) > self.threshold


class GradExplosion(Spike):
    """The spike detector on the gradient norm (before clipping), with its own threshold."""

    name = "grad_explosion"
    PARAMS = {
        **Spike.PARAMS,
        "metrics": Param(["train/grad_norm"], list, "glob patterns of the metrics watched"),
        "threshold": Param(20.0, float, "robust z-score that fires (measured: docs/health.md)", 0.0),
    }


class SinkDown(Rule):
    """A sink stopped receiving records (``disabled`` after failed retries, or ``dropping`` when
    it fell behind); once per sink and state, re-armed when the sink reports ``ok``."""

    name = "sink_down"
    ALLOWED_ACTIONS = ("log", "stop")

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.state: dict[str, str] = {}

    def on_sink_status(self, sink: str, state: str, detail: str, now: float) -> list[HealthEvent]:
        before = self.state.get(sink, "ok")
        self.state[sink] = state
        if state == "ok" or state == before:
            return NONE
        why = f": {detail}" if detail else ""
        return [self.event(now, None, None, None, None, f"sink {sink} is {state}{why}")]
