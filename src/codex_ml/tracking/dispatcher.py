"""The background writer: drain the hot-path queue, write NDJSON, fan out to sinks.

The hot path appends record tuples to a deque (an atomic, lock-free operation in CPython)
and returns. This thread wakes every ``flush_interval`` seconds, or sooner when the queue
is large, writes the batch to the NDJSON files in one write each, then hands the same batch
to every sink worker without waiting for them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from codex_ml.rundir.encoding import decode_number, encode_metrics, encode_number, encode_record, json_safe
from codex_ml.tracking.ndjson_writer import NdjsonFile
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.records import EVENT, HISTOGRAM, METRICS, PARAMS, SYSTEM, TAGS, TEXT, Record, compute_histogram
from codex_ml.tracking.reporting import Reporter
from codex_ml.rundir.run_files import read_json as _load_json, write_json_atomic
from codex_ml.secrets.redaction import redact_text
from codex_ml.tracking.worker import SinkWorker


class Dispatcher:
    """Owns the queue, the NDJSON files and the sink workers of one run."""

    def __init__(
        self,
        paths: RunPaths,
        workers: list[SinkWorker],
        reporter: Reporter,
        flush_interval: float = 1.0,
        fsync: bool = False,
        max_queue: int = 200_000,
        histogram_bins: int = 64,
        max_pending_bytes: int = 256 * 2**20,
        health: Any = None,
    ) -> None:
        self.queue: deque[Record] = deque()
        self.max_queue = max_queue
        #: The hot path wakes the thread early once this many records wait.
        self.wake_threshold = max(1, min(10_000, max_queue // 4))
        self.workers = workers
        self.records_written = 0
        #: Records that could not be prepared or encoded (each reported); close() is then incomplete.
        self.records_skipped = 0
        # On resume, start from the previous session's last values so summary.json stays whole.
        self.last_values: dict[str, float | int] = _previous_last_values(paths)
        self.last_step: int | None = None
        self.params: dict[str, Any] = _load_json(paths.params)
        self.tags: dict[str, str] = _load_json(paths.tags)
        self._paths = paths
        self._reporter = reporter
        self._flush_interval = flush_interval
        self._bins = histogram_bins
        self._files = {
            METRICS: NdjsonFile(paths.metrics, reporter, fsync, max_pending_bytes),
            HISTOGRAM: NdjsonFile(paths.histograms, reporter, fsync, max_pending_bytes),
            TEXT: NdjsonFile(paths.text, reporter, fsync, max_pending_bytes),
        }
        #: The run's HealthLink (tracking/health_link.py), or None when health checks are off.
        self.health = health
        # events.ndjson is opened at the first event: a healthy run has none.
        self._file_args = (fsync, max_pending_bytes)
        self.wake = threading.Event()
        #: Drains begun and finished by the writer thread (see Run.flush).
        self.drains_started = 0
        self.drains_ended = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="codex-tracking-writer", daemon=True)

    @property
    def torn_bytes_removed(self) -> int:
        """Bytes of torn last lines cut off when the files were reopened (resume)."""
        return sum(f.torn_bytes_removed for f in self._files.values())

    def start(self) -> None:
        """Start the sink workers and the writer thread."""
        for worker in self.workers:
            worker.start()
        self._thread.start()

    def is_alive(self) -> bool:
        """Whether the writer thread still runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Drain everything still queued, close the files; True if done within ``timeout``."""
        self._stopping = True
        self.wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _main(self) -> None:
        while not self._stopping:
            self.wake.wait(self._flush_interval)
            self.wake.clear()
            self._drain_safely()
        self._drain_safely()
        for handle in self._files.values():
            handle.close()

    def _drain_safely(self) -> None:
        # Counted so that Run.flush can wait for a whole drain, not just for an empty queue.
        self.drains_started += 1
        try:
            self.drain()
        except Exception as exc:  # noqa: BLE001 - the writer thread must survive anything
            self._reporter.error("ndjson", f"writer failed on a batch: {type(exc).__name__}: {exc}")
        finally:
            self.drains_ended += 1

    def drain(self) -> None:
        """Take everything queued now and write it out (runs on the writer thread)."""
        queue = self.queue
        batch = [queue.popleft() for _ in range(len(queue))]
        if not batch:
            return
        chunks: dict[int, list[bytes]] = {METRICS: [], HISTOGRAM: [], TEXT: [], EVENT: []}
        kept: list[Record] = []
        for record in batch:
            # One record at a time, so one that cannot be prepared or encoded costs only itself.
            try:
                record = self._prepare(record)
                self._encode(record, chunks)
            except Exception as exc:  # noqa: BLE001 - report it, keep the rest of the batch
                self.records_skipped += 1
                self._reporter.error("ndjson", f"skipped a record it could not write: {type(exc).__name__}: {exc}")
                continue
            kept.append(record)
            if self.health is not None and record[0] in (METRICS, SYSTEM, EVENT):
                self._check_health(record, chunks, kept)
        for kind, lines in chunks.items():
            if lines:
                self._file(kind).append(b"".join(lines))
        self.records_written += len(kept)
        for worker in self.workers:
            worker.submit(kept)

    def _check_health(self, record: Record, chunks: dict[int, list[bytes]], kept: list[Record]) -> None:
        """Run the health rules on a metrics or system ``record`` and write the events it raised; after
        each event (raised here or queued by the watchdog or the trainer), its ``health/events`` count."""
        try:
            raised = [record] if record[0] == EVENT else self.health.observe(record)
            for event in raised:
                if event is not record:
                    self._encode(event, chunks)
                    kept.append(event)
                count = self._prepare(self.health.written(event))
                self._encode(count, chunks)
                kept.append(count)
        except Exception as exc:  # noqa: BLE001 - a health failure never costs the record itself
            self._reporter.error("health", f"health check failed on a record: {type(exc).__name__}: {exc}")

    def _file(self, kind: int) -> NdjsonFile:
        if kind not in self._files:  # only EVENT is opened late
            self._files[kind] = NdjsonFile(self._paths.events, self._reporter, *self._file_args)
        return self._files[kind]

    def _prepare(self, record: Record) -> Record:
        kind = record[0]
        if kind == HISTOGRAM:
            return (HISTOGRAM, record[1], record[2], record[3], compute_histogram(record[4], self._bins))
        if kind == TEXT:  # masked here, off the caller's thread, before the file or any sink sees it
            return (TEXT, record[1], record[2], record[3], redact_text(record[4]))
        if kind == METRICS:
            self.last_values.update(record[3])
            self.last_step = record[1]
        return record

    def encode_record_into(self, record: Record, chunks: dict[int, list[bytes]]) -> None:
        """Prepare and encode one record into ``chunks`` (used by a forked child's run)."""
        self._encode(self._prepare(record), chunks)

    def append_now(self, kind: int, line: bytes) -> None:
        """Append one encoded line with a single ``O_APPEND`` write (a forked child's path)."""
        self._files[kind].append_line_now(line)

    def _encode(self, record: Record, chunks: dict[int, list[bytes]]) -> None:
        kind, step, wall_time = record[0], record[1], record[2]
        if kind == METRICS:
            chunks[METRICS].append(encode_metrics(step, wall_time, record[3]))
        elif kind == HISTOGRAM:
            hist = {"step": step, "time": wall_time, "name": record[3], **record[4].to_json()}
            chunks[HISTOGRAM].append(encode_record(hist))
        elif kind == TEXT:
            chunks[TEXT].append(encode_record({"step": step, "time": wall_time, "name": record[3], "text": record[4]}))
        elif kind == EVENT:
            chunks[EVENT].append(encode_record(record[3]))
        elif kind == PARAMS:
            self.params.update(record[3])
            write_json_atomic(self._paths.params, self.params)
        elif kind == TAGS:
            self.tags.update(record[3])
            write_json_atomic(self._paths.tags, self.tags)

    def summary_metrics(self) -> dict[str, float | int | str]:
        """Last value of every metric, JSON-safe."""
        return {k: encode_number(v) for k, v in self.last_values.items()}

    def pending_ndjson_bytes(self) -> int:
        """Bytes not yet on disk (non-zero only while the disk is failing)."""
        return sum(f.pending_bytes for f in self._files.values())


def _previous_last_values(paths: RunPaths) -> dict[str, float | int]:
    values = {}
    for key, raw in _load_json(paths.summary).get("metrics", {}).items():
        try:
            values[key] = decode_number(raw)
        except ValueError:
            continue
    return values
