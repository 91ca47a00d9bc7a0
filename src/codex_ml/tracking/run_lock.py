"""One writer per run directory: an exclusive ``flock`` on ``<run_dir>/run.lock``.

``start_run`` takes the lock before it reads ``run.json`` and holds it until ``close()`` has
written the closing files, so two processes can never write one run, whether both start a
new run under one name at the same instant or one resumes a run that is still training.

Why ``flock`` on a file that is never deleted:

- The kernel drops the lock when the holder dies, even of SIGKILL, so a crashed run can be
  resumed at once. The file's content (pid, host, start time of the holder) only serves the
  error message of the process that loses; a stale content never blocks anyone.
- Deleting or replacing the file would let a second process lock a new inode while the first
  still holds the old one, so it is created once and left in place (truncated on release).
- The descriptor is opened ``O_CLOEXEC``: a program the run ``exec``s does not inherit it. A
  child made by ``fork()`` does; lifecycle makes the child close its copy without unlocking
  (``forget``), so the child can neither release the parent's lock nor keep it after the
  parent dies.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from codex_ml.errors import OutputRootError, RunInUseError
from codex_ml.rundir.paths import LOCK_FILE

__all__ = ["LOCK_FILE", "RunLock", "check_not_in_use", "holder_of"]

#: A loser retries this long before giving up: a lock held only for an instant (another
#: process's holder_of probe) must not fail a real start.
_ACQUIRE_PATIENCE_S = 0.5
_RETRY_S = 0.02
#: How long a start waits for the sink process of a run whose trainer died: it keeps the lock
#: while it drains (tracking/sink_host.py, at most ORPHAN_DRAIN_S + the sinks' grace).
ORPHAN_PATIENCE_S = 40.0
#: errnos meaning "this filesystem cannot lock": the run goes on without the guarantee.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLock:
    """The held lock of one run directory; :meth:`release` at close, :meth:`forget` in a fork child."""

    def __init__(self, path: Path, fd: int | None, warning: str | None = None) -> None:
        self.path = path
        self._fd = fd
        self._owner = os.getpid()
        #: Set when the filesystem refused to lock (the run is then not protected).
        self.warning = warning

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock ``run_dir`` for this process or raise RunInUseError naming the holder."""
        path = run_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # e.g. a run.lock left read-only by another user
            raise OutputRootError(str(path), exc.strerror or str(exc)) from exc
        try:
            if not _lock_within(fd, fcntl.LOCK_EX, _ACQUIRE_PATIENCE_S) and not (
                    _holder_exited(path) and _lock_within(fd, fcntl.LOCK_EX, ORPHAN_PATIENCE_S)):
                raise RunInUseError(str(run_dir), describe_holder(_read_info(path)))
        except OSError as exc:
            if exc.errno not in _NO_LOCKING:
                os.close(fd)
                raise
            return cls(path, fd, f"cannot lock {path} on this filesystem ({exc.strerror}); "
                                 "nothing stops a second process from writing this run")
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # the note is only for the error message of a process that loses
        return cls(path, fd)

    @property
    def fd(self) -> int | None:
        """The locked descriptor (None once released); the run's sink process inherits it."""
        return self._fd

    def release(self) -> None:
        """Unlock and close (idempotent). In a forked child this only closes its copy."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.getpid() == self._owner:
            try:
                os.ftruncate(fd, 0)  # nobody holds it: say so before letting go
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child's copy must not keep it held
            except OSError:
                pass
        os.close(fd)

    def forget(self) -> None:
        """Close this process's copy of the descriptor without unlocking (a child after fork)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _lock_within(fd: int, mode: int, patience: float) -> bool:
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_RETRY_S)


def _holder_exited(path: Path) -> bool:
    """Whether the lock's recorded holder was on this host and has exited: then what still holds it is
    the dead run's sink process finishing its delivery (bounded), worth waiting for."""
    info = _read_info(path)
    pid = info.get("pid")
    return isinstance(pid, int) and info.get("host") == socket.gethostname() and not _alive(pid)


def _read_info(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def holder_of(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who writes ``run_dir`` now: ``{"pid", "host", "started"}`` ({} if it left no note), or None.

    Probes with a shared lock for an instant, so it never blocks and never names a dead process.
    """
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _lock_within(fd, fcntl.LOCK_SH, 0.0):
            return None
        return _read_info(path)
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock, if taken


def check_not_in_use(run_dir: str | os.PathLike[str]) -> None:
    """Raise RunInUseError if a live process writes ``run_dir`` (an early check before heavy work;
    ``start_run`` itself is what enforces the rule)."""
    holder = holder_of(run_dir)
    deadline = time.monotonic() + ORPHAN_PATIENCE_S
    # A dead run's sink process still draining: it lets go within its own bound.
    while holder is not None and _holder_exited(Path(run_dir) / LOCK_FILE) and time.monotonic() < deadline:
        time.sleep(0.1)
        holder = holder_of(run_dir)
    if holder is not None:
        raise RunInUseError(str(run_dir), describe_holder(holder))


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h (since 2026-12-03 12:00:00)``, for the RunInUseError message."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return "another process (it left no pid/host note)"
    since = info.get("started")
    when = time.strftime(" (since %Y-%m-%d %H:%M:%S)", time.localtime(since)) if isinstance(since, (int, float)) else ""
    text = f"pid {pid} on host {host}{when}"
    if host == socket.gethostname():
        if pid == os.getpid():
            return f"this process itself, {text}: close that run first"
        if not _alive(pid):
            return f"a child of {text}, which has exited (its sink process, or a worker it forked, is still alive)"
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
