"""Appends encoded records to the run's NDJSON files: the source of truth.

Each drain of the queue becomes one ``os.write`` per file, so there is no user-space
buffer to lose: after a drain returns, the data is in the kernel and survives a SIGKILL.
When a write fails (disk full), the unwritten bytes are kept, in order, and retried on the
next drain; past ``max_pending_bytes`` the oldest are dropped and counted, never silently.
"""

from __future__ import annotations

import os
from pathlib import Path

from codex_ml.tracking.reader import repair_torn_tail
from codex_ml.tracking.reporting import Reporter


class NdjsonFile:
    """One append-only NDJSON file with a retry buffer for failed writes."""

    def __init__(self, path: Path, reporter: Reporter, fsync: bool, max_pending_bytes: int) -> None:
        self.path = path
        self.torn_bytes_removed = repair_torn_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._reporter = reporter
        self._fsync = fsync
        self._max_pending = max_pending_bytes
        self._pending = bytearray()
        self._failing = False
        self.dropped_bytes = 0

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) after anything still pending; never raises."""
        self._pending += data
        try:
            while self._pending:
                written = os.write(self._fd, self._pending)
                del self._pending[:written]
            if self._fsync:
                os.fsync(self._fd)
            self._failing = False
        except OSError as exc:
            self._on_error(exc)

    def append_line_now(self, line: bytes) -> None:
        """One ``os.write`` of one line, bypassing the pending buffer (a forked child's copy
        of that buffer belongs to the parent). O_APPEND keeps concurrent writers' lines whole."""
        try:
            os.write(self._fd, line)
        except OSError as exc:
            self._reporter.error("ndjson", f"cannot write {self.path.name} from a forked child: {exc.strerror or exc}")

    def _on_error(self, exc: OSError) -> None:
        if not self._failing:
            self._failing = True
            self._reporter.error(
                "ndjson", f"cannot write {self.path.name}: {exc.strerror or exc}; keeping records in memory and retrying"
            )
        overflow = len(self._pending) - self._max_pending
        if overflow > 0:
            # Drop whole lines from the front so the file never gets a torn line from us.
            cut = self._pending.find(b"\n", overflow - 1) + 1 or len(self._pending)
            self.dropped_bytes += cut
            del self._pending[:cut]
            self._reporter.warn("ndjson", f"dropped {cut} bytes of the oldest unwritten records (disk still failing)")

    @property
    def pending_bytes(self) -> int:
        """Bytes accepted but not yet written."""
        return len(self._pending)

    def close(self) -> None:
        """Final retry of pending bytes, fsync, close."""
        if self._pending:
            self.append(b"")
        try:
            os.fsync(self._fd)
        except OSError:
            pass
        os.close(self._fd)
