"""One health event: what fired, where, and what to do about it.

An event is one line of ``runs/<run>/events.ndjson`` (schema in docs/health.md and
docs/run-directory.md): ``time, step, rule, severity, metric, value, threshold, message, action``.
Non-finite ``value``/``threshold`` are spelled ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, as in
metrics.ndjson.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from codex_ml.rundir.encoding import decode_number, encode_number
from codex_ml.rundir.reader import ReadReport, iter_records

__all__ = ["ACTIONS", "IN_LOOP_ACTIONS", "SEVERITIES", "HealthEvent", "read_events"]

#: What a rule may ask for when it fires (docs/health.md, "Actions").
ACTIONS = ("log", "stop", "skip", "rollback")
#: The actions the training loop takes itself, before the optimizer step (the writer thread leaves
#: rules with these to it).
IN_LOOP_ACTIONS = ("skip", "rollback")
SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class HealthEvent:
    """A rule firing. ``step`` is the training step it concerns (None when unknown)."""

    time: float
    step: int | None
    rule: str
    severity: str
    metric: str | None
    value: float | None
    threshold: float | None
    message: str
    action: str = "log"

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict (non-finite numbers spelled as strings)."""
        data = asdict(self)
        for key in ("value", "threshold"):
            if data[key] is not None:
                data[key] = encode_number(float(data[key]))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HealthEvent:
        """The event a :meth:`to_json` dict (or an events.ndjson line) holds; unknown keys are ignored.

        Raises ValueError when a key is missing or has the wrong type.
        """
        try:
            return cls(
                time=float(data["time"]),
                step=None if data.get("step") is None else int(data["step"]),
                rule=str(data["rule"]),
                severity=str(data.get("severity", "warning")),
                metric=None if data.get("metric") is None else str(data["metric"]),
                value=_number(data.get("value")),
                threshold=_number(data.get("threshold")),
                message=str(data.get("message", "")),
                action=str(data.get("action", "log")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a health event ({exc!r})") from exc

    def key(self) -> tuple[str, int | None, str | None]:
        """``(rule, step, metric)``: what a live run and its backtest agree on (times differ)."""
        return self.rule, self.step, self.metric


def _number(value: Any) -> float | None:
    return None if value is None else float(decode_number(value))


def read_events(path: str | os.PathLike[str], report: ReadReport | None = None) -> list[HealthEvent]:
    """Every event in an events.ndjson file; a torn last line and unreadable lines are skipped
    (and noted in ``report`` when given). A missing file has no events."""
    if not os.path.exists(path):
        return []
    report = report if report is not None else ReadReport(str(path))
    events = []
    for number, record in enumerate(iter_records(path, report), start=1):
        try:
            events.append(HealthEvent.from_json(record))
        except ValueError as exc:  # noted by record number (blank and unparsable lines are not counted)
            report.bad_lines.append((number, f"record {number}: {exc}"))
    return events
