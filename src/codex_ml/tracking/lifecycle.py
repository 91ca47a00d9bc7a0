"""Closing runs when the process ends: normal exit, uncaught exception, SIGTERM.

- SIGTERM: every open run is flushed and closed KILLED, then the previous handler runs
  (by default the process dies of SIGTERM, so its exit status is preserved).
- An uncaught exception: open runs are closed FAILED.
- Interpreter exit with runs still open: they are closed FINISHED, with a short timeout,
  before backends' own exit hooks run (so W&B and MLflow still accept the last writes).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Protocol

EXIT_CLOSE_TIMEOUT = 10.0


class Closable(Protocol):
    """What lifecycle needs from a run."""

    def close(self, status: str = "FINISHED", timeout: float | None = None) -> Any:
        """Close with a status."""


# A strong set on purpose: a run nobody references any more must still be closed at exit
# (a WeakSet would let it be collected unclosed, losing its queued records).
_open_runs: set[Any] = set()
_lock = threading.Lock()
_installed = False
_previous_sigterm: Any = None
_uncaught = False
#: Set when SIGTERM arrives while this thread is inside a run's close(): the signal is
#: delivered again once that close has written its final files.
_deferred_signal: int | None = None
_closing_here: set[Any] = set()


def register(run: Closable) -> None:
    """Track ``run`` so that exit paths close it; installs the hooks once."""
    with _lock:
        _open_runs.add(run)
        _install_once()


def unregister(run: Closable) -> None:
    """Stop tracking a closed run."""
    with _lock:
        _open_runs.discard(run)


def closing(run: Closable) -> None:
    """Note that the current thread is inside ``run.close()`` (see :func:`closed`)."""
    _closing_here.add(run)


def closed(run: Closable) -> None:
    """``run.close()`` has finished: stop tracking it, and deliver a SIGTERM deferred meanwhile."""
    global _deferred_signal
    _closing_here.discard(run)
    unregister(run)
    if _deferred_signal is not None and not _closing_here:
        signum, _deferred_signal = _deferred_signal, None
        _deliver(signum, None)


def close_all(status: str, timeout: float | None = None) -> None:
    """Close every open run with ``status``."""
    for run in list(_open_runs):
        try:
            run.close(status, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - keep closing the others
            print(f"[monitoring-error] run: close failed: {exc}", file=sys.stderr)


def _install_once() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _install_sigterm()
    previous_hook = sys.excepthook

    def excepthook(kind: Any, value: Any, tb: Any) -> None:
        global _uncaught
        _uncaught = True
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    os.register_at_fork(after_in_child=_after_fork_in_child)
    # threading's exit hooks run before atexit ones, so W&B/MLflow (atexit) see our last writes.
    register_exit = getattr(threading, "_register_atexit", None)
    if register_exit is not None:
        register_exit(_at_exit)
    else:  # pragma: no cover - other interpreters
        import atexit

        atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    # The child's copies of open runs belong to the parent: they must not be closed at the
    # child's exit (that would finish the parent's MLflow run); records go straight to disk.
    for run in list(_open_runs):
        become = getattr(run, "become_fork_child", None)
        if become is not None:
            become()
    _open_runs.clear()
    _closing_here.clear()


def _at_exit() -> None:
    close_all("FAILED" if _uncaught else "FINISHED", timeout=EXIT_CLOSE_TIMEOUT)


def _install_sigterm() -> None:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    _previous_sigterm = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _deferred_signal
    close_all("KILLED", timeout=EXIT_CLOSE_TIMEOUT)
    if _closing_here:
        # The signal interrupted a close() on this thread; dying now would leave that run
        # RUNNING with no summary. It is marked KILLED and the signal re-sent when it is done.
        _deferred_signal = signum
        return
    _deliver(signum, frame)


def _deliver(signum: int, frame: Any) -> None:
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # Default disposition: die of SIGTERM so the parent sees the real exit status.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
