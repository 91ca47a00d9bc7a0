"""The sink protocol: one small class per backend.

A sink's constructor only stores its arguments; ``start`` imports and connects to the
backend (it runs on the sink's own background thread). The ``write_*`` methods receive
records in log order, consecutive scalars batched into ``write_metrics`` calls of at most
``points_per_call`` points. A sink raises on failure; the worker that drives it reports, retries
and, if need be, disables it. Sinks never see the hot path.

close() stops a sink between two calls once its timeout has passed; a sink whose backend
buffers on its own (``buffered``) has its records counted as delivered only once ``close``
returned, and a sink stuck in a call past the close timeout is asked to ``abort``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.records import ARTIFACT, EVENT, HISTOGRAM, METRICS, PARAMS, SYSTEM, TAGS, TEXT, Histogram, Record

MetricPoint = tuple[int, float, dict[str, float | int]]


@dataclass
class RunInfo:
    """What a sink needs to know about the run it writes for."""

    name: str
    run_id: str
    paths: RunPaths
    resumed: bool = False
    #: Backend state saved by earlier sessions of this run (e.g. the MLflow run id).
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Persist backend state in run.json so that a resume can find it: remember(sink, dict).
    remember: Callable[[str, dict[str, Any]], None] = lambda sink, state: None
    #: Print one warning line (not an error): warn(sink, message).
    warn: Callable[[str, str], None] = lambda sink, message: None
    #: The tracker's own health right now (queue depth, records written, errors per sink).
    health: Callable[[], dict[str, Any]] = lambda: {}


class Sink:
    """Base class: override the ``write_*`` methods the backend supports."""

    #: Short name used in messages, e.g. ``[monitoring-error] mlflow: ...``.
    name = "sink"
    #: The most scalar points one ``write_metrics``/``write_system`` call receives: close() can
    #: stop a sink only between calls, so one call should take a fraction of a second.
    points_per_call = 1000
    #: True when ``write_*`` return once the backend's own buffer (a writer thread, a service
    #: process) has the records rather than once they are stored: they count as delivered
    #: only when ``close`` has returned, which must store everything accepted before it.
    buffered = False

    def start(self, run: RunInfo) -> None:
        """Import and connect to the backend. Called once, on the sink's thread."""

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """Scalars: a list of ``(step, wall_time, {name: value})``."""

    def write_system(self, points: list[MetricPoint]) -> None:
        """System telemetry samples ``(sample_index, wall_time, {"system/...": value})``.

        They have their own time axis (the sample index); by default they are written like
        any other scalars.
        """
        self.write_metrics(points)

    def write_histogram(self, step: int, wall_time: float, name: str, histogram: Histogram) -> None:
        """One histogram."""

    def write_text(self, step: int, wall_time: float, name: str, text: str) -> None:
        """One text record."""

    def write_params(self, params: dict[str, Any]) -> None:
        """Flattened params (``{"model.n_layer": 4}``)."""

    def write_tags(self, tags: dict[str, str]) -> None:
        """Run tags."""

    def write_artifact(self, path: Path, name: str) -> None:
        """A file already copied into the run's ``artifacts/`` folder."""

    def write_event(self, event: dict[str, Any]) -> None:
        """One health event (``rule``, ``severity``, ``message``, ... as in events.ndjson).

        The default writes its message as text ``health/<rule>`` at the event's step, so every
        backend that shows text shows it; backends with an alert concept override this.
        """
        step = event.get("step")
        self.write_text(int(step) if step is not None else 0, float(event["time"]), f"health/{event['rule']}",
                        str(event["message"]))

    def flush(self) -> None:
        """Push buffered data to the backend."""

    def close(self, status: str) -> None:
        """Finish the backend run with FINISHED, FAILED or KILLED."""

    def abort(self) -> None:
        """The sink's thread is still inside a backend call after close() gave up on it.

        Called from another thread. Stop the backend from writing any more and release
        whatever would hold the process at exit; return within a second or so. The worker
        makes no further call on the sink. The default does nothing.
        """


Operation = tuple[Callable[[], None], int]


def plan_operations(sink: Sink, records: list[Record]) -> list[Operation]:
    """Split a batch into ``(call on sink, records it carries)``, grouping consecutive scalar
    records of one kind into calls of at most ``sink.points_per_call`` points.

    The worker runs these one by one so that a retry after a failure resumes at the
    failed call instead of re-sending what already went through, and so that close() can
    stop it between two calls.
    """
    operations: list[Operation] = []
    points: list[MetricPoint] = []
    group_kind = METRICS
    limit = max(1, int(sink.points_per_call))
    for record in records:
        kind = record[0]
        if kind in (METRICS, SYSTEM):
            if points and (kind != group_kind or len(points) >= limit):
                operations.append(_scalar_call(sink, group_kind, points))
                points = []
            group_kind = kind
            points.append((record[1], record[2], record[3]))
            continue
        if points:
            operations.append(_scalar_call(sink, group_kind, points))
            points = []
        operations.append((_record_call(sink, record), 1))
    if points:
        operations.append(_scalar_call(sink, group_kind, points))
    return operations


def _scalar_call(sink: Sink, kind: int, points: list[MetricPoint]) -> Operation:
    return _bind(_scalar_method(sink, kind), points), len(points)


def _scalar_method(sink: Sink, kind: int) -> Callable[[list[MetricPoint]], None]:
    return sink.write_system if kind == SYSTEM else sink.write_metrics


def _bind(method: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: method(*args)


def _record_call(sink: Sink, record: Record) -> Callable[[], None]:
    kind = record[0]
    if kind == HISTOGRAM:
        return _bind(sink.write_histogram, record[1], record[2], record[3], record[4])
    if kind == TEXT:
        return _bind(sink.write_text, record[1], record[2], record[3], record[4])
    if kind == PARAMS:
        return _bind(sink.write_params, record[3])
    if kind == TAGS:
        return _bind(sink.write_tags, record[3])
    if kind == ARTIFACT:
        return _bind(sink.write_artifact, record[3], record[4])
    if kind == EVENT:
        return _bind(sink.write_event, record[3])
    raise ValueError(f"unknown record kind {kind!r}")
