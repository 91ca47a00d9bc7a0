"""``HealthMonitor``: feeds records to the rules and collects their events, from any thread.

The tracking writer thread calls :meth:`HealthMonitor.observe` with each record it writes, a
watchdog thread calls :meth:`HealthMonitor.tick` about once a second, and the run reports sink
state changes through :meth:`HealthMonitor.sink_status`; one lock serialises them (each call
is microseconds, so neither thread waits long). The backtest drives the same object over a
finished run's files. A rule that raises is switched off with its error kept in ``errors``:
a broken plugin never stops the writer thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from typing import Any

from codex_ml.health.config import HealthConfig
from codex_ml.health.events import HealthEvent
from codex_ml.health.rules import NONE, MetricFilter, Rule
from codex_ml.rundir.records import METRICS, SYSTEM, Record

__all__ = ["HealthMonitor"]


class HealthMonitor:
    """The active rules of ``config`` (or the given ``rules``), minus ``exclude``."""

    def __init__(self, config: HealthConfig | None = None, rules: list[Rule] | None = None,
                 exclude: Iterable[str] = ()) -> None:
        """Build the rules (``rules`` replaces the config's); ``exclude`` leaves rules out by name
        (e.g. those the trainer evaluates itself because their action is ``skip``/``rollback``)."""
        self.config = config if config is not None else HealthConfig()
        built = rules if rules is not None else self.config.build_rules()
        left_out = set(exclude)
        self.rules: list[Rule] = [rule for rule in built if rule.name not in left_out]
        self._lock = threading.Lock()
        #: ``(rule name, repr of the exception)`` of each rule switched off after raising.
        self.errors: list[tuple[str, str]] = []
        #: Events raised so far (a running count: the ``health/events`` metric).
        self.count = 0
        #: The last training step seen; events of ticks and sink changes without one get it.
        self.last_step: int | None = None
        # The rules that care about a record, by its tuple of names: a run logs few distinct
        # records, and most rules watch few names, so most records reach one or two rules.
        self._interested: dict[tuple[str, ...], list[Rule]] = {}

    def exclude(self, names: Iterable[str]) -> None:
        """Stop evaluating the rules called ``names``."""
        left_out = set(names)
        with self._lock:
            self.rules = [rule for rule in self.rules if rule.name not in left_out]
            self._interested.clear()

    def names(self) -> list[str]:
        """The names of the rules evaluated, in order."""
        return [rule.name for rule in self.rules]

    def observe(self, record: Record) -> list[HealthEvent]:
        """Feed one record tuple (METRICS or SYSTEM; other kinds are ignored); the events it raised."""
        kind = record[0]
        if kind == METRICS:
            step, wall_time, metrics = record[1], record[2], record[3]
            with self._lock:
                self.last_step = step
                rules = self._interested.get(tuple(metrics))
                if rules is None:
                    rules = self._remember_interest(metrics)
                return self._call("on_metrics", step, wall_time, metrics, rules=rules) if rules else NONE
        if kind == SYSTEM:
            with self._lock:
                return self._call("on_system", record[1], record[2], record[3])
        return NONE

    def tick(self, now: float | None = None) -> list[HealthEvent]:
        """Let time-based rules check the clock (``now``: unix seconds, default the current time)."""
        now = time.time() if now is None else now
        with self._lock:
            return self._call("on_tick", now)

    def sink_status(self, sink: str, state: str, detail: str = "", now: float | None = None) -> list[HealthEvent]:
        """Report that ``sink`` is now ``ok``, ``dropping`` or ``disabled``."""
        now = time.time() if now is None else now
        with self._lock:
            return self._call("on_sink_status", sink, state, detail, now)

    def _remember_interest(self, metrics: Any) -> list[Rule]:
        if len(self._interested) > 4096:  # names that change every record: stay bounded
            self._interested.clear()
        rules = [rule for rule in self.rules if _cares(rule, metrics)]
        self._interested[tuple(metrics)] = rules
        return rules

    def _call(self, hook: str, *args: Any, rules: list[Rule] | None = None) -> list[HealthEvent]:
        # Called with the lock held. Most calls raise nothing: stay on the cheap path.
        out = NONE
        for rule in self.rules if rules is None else rules:
            try:
                events = getattr(rule, hook)(*args)
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the writer thread
                self._disable(rule, exc)
                continue
            if events:
                out = [*out, *events]
        if out:
            out = [e if e.step is not None else dataclasses.replace(e, step=self.last_step) for e in out]
            self.count += len(out)
        return out

    def _disable(self, rule: Rule, exc: BaseException) -> None:
        self.errors.append((rule.name, f"{type(exc).__name__}: {exc}"))
        self.rules = [r for r in self.rules if r is not rule]
        self._interested.clear()


def _cares(rule: Rule, metrics: Any) -> bool:
    """Whether ``rule`` may act on a metrics record with these names."""
    if type(rule).on_metrics is Rule.on_metrics:
        return False  # it watches system samples, ticks or sinks only
    watch = getattr(rule, "watch", None)
    return watch.any_in(metrics) if isinstance(watch, MetricFilter) else True
