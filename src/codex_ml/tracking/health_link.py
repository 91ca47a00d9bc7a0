"""A run's health wiring: rules on the writer thread, a watchdog thread, events out.

The :class:`~codex_ml.health.HealthMonitor` sees every metrics and system record as the writer
thread writes it (:meth:`HealthLink.observe`), so ``log_metrics`` pays nothing for it. Time-based
rules (``stall``) and sink state (``sink_down``) cannot wait for a record: the watchdog thread
ticks the monitor about once a second and polls the sink workers; its events join the queue like
any record. When ``stall`` fires the watchdog first writes every thread's Python stack to
``health/stacks-<step>.txt`` (it works while the training thread is stuck in C code).

Each event becomes an ``EVENT`` record: one line of ``events.ndjson`` (written by the dispatcher),
``write_event`` on every sink, and a ``health/events`` running count in metrics.ndjson. An event
whose action is ``stop`` is kept in :attr:`HealthLink.stop_event` for the training loop to act on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from codex_ml.health.events import IN_LOOP_ACTIONS, HealthEvent, read_events
from codex_ml.health.monitor import HealthMonitor
from codex_ml.health.stacks import dump_stacks
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.records import EVENT, METRICS, Record
from codex_ml.tracking.reporting import Reporter

__all__ = ["EVENT_COUNT_METRIC", "HealthLink", "event_record"]

#: The running count of health events, logged at each event's step.
EVENT_COUNT_METRIC = "health/events"
#: Seconds between two watchdog ticks: a stall is reported at most this late after its limit
#: (the limit's defaults leave room for it, see the stall rule); 4 wake-ups a second cost nothing.
WATCHDOG_INTERVAL = 0.25


def event_record(event: HealthEvent | dict[str, Any]) -> Record:
    """The ``EVENT`` record tuple of ``event`` (a HealthEvent or its JSON dict)."""
    data = event.to_json() if isinstance(event, HealthEvent) else dict(event)
    return (EVENT, data.get("step"), float(data["time"]), data)


class HealthLink:
    """One run's monitor, watchdog and event counts."""

    def __init__(self, paths: RunPaths, monitor: HealthMonitor, reporter: Reporter,
                 enqueue: Callable[[Record], None], workers: list[Any], interval: float = WATCHDOG_INTERVAL) -> None:
        self.monitor = monitor
        self._paths = paths
        self._reporter = reporter
        self._enqueue = enqueue
        self._workers = workers
        self._interval = interval
        #: Events written in this run, per rule (earlier sessions' included on resume).
        self.counts: Counter[str] = Counter(e.rule for e in read_events(paths.events))
        self.last: dict[str, Any] | None = None
        #: The first event whose action is ``stop`` (the training loop checks it each step).
        self.stop_event: dict[str, Any] | None = None
        self._sink_states: dict[str, str] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="codex-health-watchdog", daemon=True)

    # -- the writer thread ------------------------------------------------------------------
    def observe(self, record: Record) -> list[Record]:
        """The EVENT records ``record`` (metrics or system) raised; called on the writer thread."""
        events = self.monitor.observe(record)
        return [event_record(e) for e in events] if events else []

    def written(self, record: Record) -> Record:
        """Count an EVENT record about to be written; return its ``health/events`` metrics record."""
        data = record[3]
        self.counts[str(data["rule"])] += 1
        self.last = data
        if data.get("action") == "stop" and self.stop_event is None:
            self.stop_event = data
        return (METRICS, record[1] if record[1] is not None else 0, record[2],
                {EVENT_COUNT_METRIC: sum(self.counts.values())})

    # -- the watchdog thread ----------------------------------------------------------------
    def start(self) -> None:
        """Start the watchdog thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the watchdog (the writer thread keeps evaluating records until it stops)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.check(time.time())
            except Exception as exc:  # noqa: BLE001 - the watchdog reports, and keeps watching
                self._reporter.error("health", f"watchdog failed: {type(exc).__name__}: {exc}")

    def check(self, now: float) -> int:
        """One watchdog round: tick the rules, poll the sinks; enqueue what fired. Returns the count."""
        # A new list: the rules return a shared empty list when nothing fired, never to be extended.
        events = [*self.monitor.tick(now), *self._sink_events(now)]
        for event in events:
            if event.rule == "stall":
                event = self._with_stacks(event)
            self._enqueue(event_record(event))
        return len(events)

    def _sink_events(self, now: float) -> list[HealthEvent]:
        events: list[HealthEvent] = []
        for worker in self._workers:
            stats = worker.stats
            state = "disabled" if stats.disabled else "dropping" if stats.dropped else "ok"
            name = worker.sink.name
            if self._sink_states.get(name, "ok") != state:
                self._sink_states[name] = state
                detail = f"{stats.dropped} records dropped" if state == "dropping" else ""
                events += self.monitor.sink_status(name, state, detail, now)
        return events

    def _with_stacks(self, event: HealthEvent) -> HealthEvent:
        """Write every thread's stack next to the run; the event's message names the file."""
        import dataclasses

        step = event.step if event.step is not None else 0
        try:
            path = dump_stacks(self._paths.health / f"stacks-{step}.txt")
        except OSError as exc:
            self._reporter.warn("health", f"could not write the stall's stacks: {exc}")
            return event
        return dataclasses.replace(event, message=f"{event.message}; stacks in {path}")

    # -- the summary ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """summary.json's ``health`` section: events per rule, the last one, rules that broke."""
        return {
            "events": sum(self.counts.values()),
            "by_rule": dict(sorted(self.counts.items())),
            "last": self.last,
            "rules": self.monitor.names(),
            "rule_errors": [{"rule": r, "error": e} for r, e in self.monitor.errors],
        }


def open_health(paths: RunPaths, health: Any, reporter: Reporter, dispatcher: Any) -> HealthLink:
    """The HealthLink of a run being opened: ``health`` is a HealthConfig, a ``health:`` mapping,
    False (no rules) or None (the defaults). Rules whose action is ``skip`` or ``rollback`` are
    left to the training loop, which must act before the optimizer step (see docs/health.md)."""
    from codex_ml.health.config import HealthConfig

    if health is False:
        config = HealthConfig(enabled=False)
    elif isinstance(health, HealthConfig):
        config = health
    else:
        config = HealthConfig.from_mapping(health)
    in_loop = [name for name, rule in config.active().items() if rule.get("action") in IN_LOOP_ACTIONS]
    monitor = HealthMonitor(config, exclude=in_loop)

    def enqueue(record: Record) -> None:
        dispatcher.queue.append(record)
        dispatcher.wake.set()  # an event is news: write it now, not at the next flush

    return HealthLink(paths, monitor, reporter, enqueue, dispatcher.workers)
