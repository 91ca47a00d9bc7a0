"""``codex-ml monitoring tail [-f]``: the last records of a run, and new ones as they come.

Following reads only complete lines: the writer appends whole lines with one ``write()``,
but a reader can still catch one half written (or a crash can leave it torn), so bytes
after the last newline wait for the next check. A file that shrinks (replaced or
truncated) is read again from the start. With ``until_closed`` it stops once the run is
closed: ``summary.json`` exists and run.json no longer says RUNNING (a resumed run
reopens as RUNNING, so an old summary does not stop it).

The run's health events (``events.ndjson`` beside the metrics, which may appear only after
tail started) are followed the same way and printed between the records in time order,
one ``[health] ...`` line each.

Unlike the other views, tail shows lines as they were written: after a ``rollback`` the steps trained
again appear a second time, after a ``[health] step C rewind warning: rewound from step S ...`` line
that marks where the run went back (the other readers drop the superseded lines; codex_ml.rundir.rewinds).
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from codex_ml.monitoring import health_events
from codex_ml.monitoring.runs import MonitoringInputError, read_json
from codex_ml.rundir.paths import METRICS_FILE, RUN_FILE, SUMMARY_FILE

Printer = Callable[[dict[str, Any]], None]


def _warn(message: str) -> None:
    print(f"[tail] {message}", file=sys.stderr, flush=True)


def text_printer(record: dict[str, Any]) -> None:
    """One line per record: step, wall-clock time and the metrics; a health event as
    ``[health] step 300 nonfinite critical: train/loss is nan at step 300``."""
    if health_events.is_event(record):
        event = health_events.parse(record)
        print(f"[health] {health_events.describe(event) if event else record}", flush=True)
        return
    when = time.strftime("%H:%M:%S", time.localtime(record.get("time", 0)))
    metrics = "  ".join(f"{k}={_short(v)}" for k, v in record.get("metrics", {}).items())
    print(f"step {record.get('step')}  {when}  {metrics}", flush=True)


def json_printer(record: dict[str, Any]) -> None:
    """The record as one JSON line (non-finite values spelled as in the file); an event is its
    events.ndjson line (it has ``rule`` where a metrics record has ``metrics``)."""
    sys.stdout.write(orjson.dumps(record).decode() + "\n")
    sys.stdout.flush()


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Follower:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path, warn: Callable[[str], None] = _warn) -> None:
        self.path = path
        self.offset = 0
        self.lineno = 0
        self._warn = warn

    def read_new(self) -> list[dict[str, Any]]:
        """Records of the complete lines added since the last call (none if the file is missing)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self._warn(f"{self.path} shrank (replaced or truncated); reading it again from the start")
            self.offset, self.lineno = 0, 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a partial last line waits for its newline
        self.offset += len(complete)
        return self._parse(complete)

    def _parse(self, data: bytes) -> list[dict[str, Any]]:
        records = []
        for line in data.splitlines():
            self.lineno += 1
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                self._warn(f"{self.path}:{self.lineno}: unreadable line skipped ({exc})")
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def leftover(self) -> bytes:
        """Bytes after the last complete line (a torn tail once the writer is gone)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                return handle.read()
        except FileNotFoundError:
            return b""


def metrics_path(path: Path, follow: bool) -> Path:
    """The metrics file of a run directory (or the file itself)."""
    if path.is_dir():
        target = path / METRICS_FILE
        if not target.exists() and not follow:
            raise MonitoringInputError(path, f"has no {METRICS_FILE} yet (use -f to wait for it)")
        return target
    if not path.exists():
        raise MonitoringInputError(path, "no such file or directory (give a run directory or a metrics NDJSON file)")
    return path


def run_closed(run_dir: Path) -> bool:
    """True once the run wrote summary.json and run.json no longer says RUNNING."""
    if not (run_dir / SUMMARY_FILE).exists():
        return False
    return read_json(run_dir / RUN_FILE).get("status", "FINISHED") != "RUNNING"


def tail(path: str | Path, printer: Printer, *, follow: bool = False, lines: int = 10, until_closed: bool = False,
         interval: float = 0.5, warn: Callable[[str], None] = _warn, max_seconds: float | None = None) -> int:  # fmt: skip
    """Print the last ``lines`` records (with the health events since the first of them), then
    (``follow``) new records and events; returns how many were printed.

    ``until_closed`` implies ``follow`` and returns once the run is closed and read to the
    end; otherwise following runs until Ctrl-C (or ``max_seconds``, for tests and scripts).
    """
    path = Path(path)
    target = metrics_path(path, follow or until_closed)
    follower = Follower(target, warn)
    events_file = health_events.events_beside(target)
    events = Follower(events_file, warn) if events_file is not None else None
    shown = _emit(printer, _first(follower.read_new(), events.read_new() if events else [], lines))
    if not (follow or until_closed):
        return shown
    run_dir = target.parent
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while deadline is None or time.monotonic() < deadline:
        closed = until_closed and run_closed(run_dir)  # checked before reading: no record is missed
        shown += _emit(printer, _merged(follower.read_new(), events.read_new() if events else []))
        if closed:
            if follower.leftover().strip():
                warn(f"{target}: the last line is torn (cut off mid-write); skipped")
            break
        time.sleep(interval)
    return shown


def _first(records: list[dict[str, Any]], events: list[dict[str, Any]], lines: int) -> Iterable[dict[str, Any]]:
    """The last ``lines`` records and the events from the first of them on (at most ``lines``)."""
    if lines <= 0:
        return []
    records = records[-lines:]
    if records:
        start = _time(records[0])
        events = [event for event in events if _time(event) >= start]
    return _merged(records, events[-lines:])


def _merged(records: list[dict[str, Any]], events: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    # Each file keeps its own order; events go between the records by wall time.
    return heapq.merge(records, events, key=_time) if events else records


def _time(record: dict[str, Any]) -> float:
    value = record.get("time")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _emit(printer: Printer, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    for record in records:
        printer(record)
        count += 1
    return count
