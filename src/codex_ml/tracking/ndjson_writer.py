"""Appends encoded records to the run's NDJSON files: the source of truth.

Each drain of the queue becomes one ``os.write`` per file, so there is no user-space
buffer to lose: after a drain returns, the data is in the kernel and survives a SIGKILL.
When a write fails (disk full), the unwritten bytes are kept, in order, and retried on the
next drain; past ``max_pending_bytes`` the oldest are dropped and counted, never silently.

The file is written through one descriptor, so renaming or deleting it under a live run
would send every later record into the renamed (or unlinked) file. Before each write the
descriptor's inode is compared with the one at the documented path (one ``stat``); when they
differ the file is recreated at the path and the move is reported once. When the whole run
directory was moved instead, the records stay with their run: writing goes on in the moved
file, never into whatever directory now has the old name (a new run, perhaps).
"""

from __future__ import annotations

import os
from pathlib import Path

from codex_ml.rundir.reader import repair_torn_tail
from codex_ml.tracking.reporting import Reporter


class NdjsonFile:
    """One append-only NDJSON file with a retry buffer for failed writes."""

    def __init__(self, path: Path, reporter: Reporter, fsync: bool, max_pending_bytes: int) -> None:
        self.path = path
        self.torn_bytes_removed = repair_torn_tail(path)
        # Absolute, so a chdir of the training code is never mistaken for a moved file.
        self._where = os.path.abspath(path)
        self._fd, self._identity = _open_append(self._where)
        self._directory = _identity(os.path.dirname(self._where))
        self._reopen_failed = False
        self._reporter = reporter
        self._fsync = fsync
        self._max_pending = max_pending_bytes
        self._pending = bytearray()
        self._failing = False
        self.dropped_bytes = 0

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) after anything still pending; never raises."""
        self._follow_path()
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
        self._follow_path()
        try:
            os.write(self._fd, line)
        except OSError as exc:
            self._reporter.error("ndjson", f"cannot write {self.path.name} from a forked child: {exc.strerror or exc}")

    def _follow_path(self) -> None:
        """Reopen the file at ``path`` if the one written so far was renamed, deleted or replaced."""
        try:
            st = os.stat(self._where)
            if (st.st_dev, st.st_ino) == self._identity:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return  # cannot tell (e.g. a permission change): keep writing where we are
        if _identity(os.path.dirname(self._where)) != self._directory:
            self._stay(f"the run directory of {self.path.name} was moved or replaced while the run was writing it; "
                       "records keep going to the moved directory")
            return
        try:
            repair_torn_tail(self._where)  # a file put there by hand may end mid-line
            fd, identity = _open_append(self._where)
        except OSError as exc:
            self._stay(f"{self.path} was renamed or deleted while the run was writing it and cannot be recreated "
                       f"({exc.strerror or exc}); records keep going to the moved file")
            return
        os.close(self._fd)
        self._fd, self._identity, self._reopen_failed = fd, identity, False
        self._reporter.error("ndjson", f"{self.path.name} was renamed or deleted while the run was writing it; "
                                       f"later records go to a new {self.path} (the earlier ones are in the "
                                       "moved file, if it still exists)")

    def _stay(self, why: str) -> None:
        """Keep writing the moved file; say why once."""
        if not self._reopen_failed:
            self._reopen_failed = True
            self._reporter.error("ndjson", why)

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


def _open_append(path: str) -> tuple[int, tuple[int, int]]:
    """An ``O_APPEND`` descriptor on ``path`` and the (device, inode) it writes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    return fd, (st.st_dev, st.st_ino)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
