"""Health events as the monitoring commands show them (inspect, tail, plot).

A run's events live in ``runs/<run>/events.ndjson`` beside its metrics (docs/run-directory.md);
this module finds that file for an input, reads it, counts events per rule and writes the
one-line form that ``inspect`` lists and ``tail -f`` prints. Light: no numpy, no rich.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from codex_ml.health.events import HealthEvent, read_events
from codex_ml.monitoring.runs import RunSource
from codex_ml.rundir.paths import EVENTS_FILE, METRICS_FILE
from codex_ml.rundir.reader import ReadReport

#: Events ``inspect`` lists for humans before "... N more" (the JSON output has all of them).
MAX_LISTED = 20


def events_beside(metrics_file: Path) -> Path | None:
    """The events file of the run a metrics file belongs to (None for a file not named metrics.ndjson,
    which has no run around it to look in)."""
    return metrics_file.parent / EVENTS_FILE if metrics_file.name == METRICS_FILE else None


def events_path(source: RunSource) -> Path | None:
    """Where the events of an inspected input are: the run directory's file, or the one beside a
    metrics.ndjson given directly; None for other files."""
    if source.run_dir is not None:
        return source.run_dir / EVENTS_FILE
    return events_beside(source.main)


def load(source: RunSource) -> tuple[list[HealthEvent], ReadReport | None]:
    """The input's events in file order and what the read found (None: no events file to read)."""
    path = events_path(source)
    if path is None or not path.exists():
        return [], None
    report = ReadReport(str(path))
    return read_events(path, report), report


def by_rule(events: list[HealthEvent]) -> dict[str, int]:
    """Events per rule, rules in the order they first fired."""
    return dict(Counter(event.rule for event in events))


def describe(event: HealthEvent) -> str:
    """One line: ``step 300 nonfinite critical: train/loss is nan at step 300`` (plus the action
    when it is not ``log``, since stop/skip/rollback changed the run)."""
    where = "step -" if event.step is None else f"step {event.step}"
    action = "" if event.action == "log" else f"  (action: {event.action})"
    return f"{where} {event.rule} {event.severity}: {event.message}{action}"


def parse(record: dict[str, Any]) -> HealthEvent | None:
    """The event an events.ndjson record holds, or None when it is not one (``tail`` shows it raw)."""
    try:
        return HealthEvent.from_json(record)
    except (ValueError, OverflowError):
        return None


def is_event(record: dict[str, Any]) -> bool:
    """True for an events.ndjson record (metrics records carry ``metrics`` and no ``rule``)."""
    return "rule" in record and "metrics" not in record
