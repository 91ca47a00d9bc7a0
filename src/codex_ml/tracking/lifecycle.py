"""Closing runs when the process ends: normal exit, uncaught exception, SIGTERM.

- SIGTERM: every open run is flushed and closed KILLED, then the previous handler runs
  (by default the process dies of SIGTERM, so its exit status is preserved).
- Ctrl-C (SIGINT) while a run's close() waits on the main thread (typically the second Ctrl-C:
  the first stopped training): close() stops waiting for slow sinks, ends the run KILLED with
  run.json and summary.json written, then the interrupt takes effect (by default the process
  dies of SIGINT, without a traceback from inside close()).
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
#: The SIGINT handler in place when an interrupted close() began (see InterruptWhileClosing).
_previous_sigint: Any = None
_uncaught = False
#: Set when SIGTERM (or SIGINT) arrives while this thread is inside a run's close(): the
#: signal is delivered again once that close has written its final files.
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


def closed(run: Closable, interrupted: bool = False) -> None:
    """``run.close()`` has finished: stop tracking it, and deliver a SIGTERM deferred meanwhile
    (or the Ctrl-C that ``interrupted`` the close, after closing the other open runs KILLED)."""
    global _deferred_signal
    _closing_here.discard(run)
    unregister(run)
    if interrupted and _deferred_signal is None:
        _deferred_signal = signal.SIGINT
    if _deferred_signal is not None and not _closing_here:
        signum, _deferred_signal = _deferred_signal, None
        if signum == signal.SIGINT:
            close_all("KILLED", timeout=EXIT_CLOSE_TIMEOUT)
        _deliver(signum, None)


class StopWaiting(KeyboardInterrupt):
    """Raised out of close()'s waits by Ctrl-C; close() catches it and ends at once."""


class InterruptWhileClosing:
    """Ctrl-C handling for the span of one close() on the main thread (elsewhere it does nothing).

    Python's default raises KeyboardInterrupt wherever close() happens to wait, leaving
    run.json RUNNING and no summary.json. Instead the first SIGINT raises :class:`StopWaiting`,
    which close() catches to end the run KILLED at once; later ones are ignored until close()
    has written its files (that takes a bounded moment).
    """

    def __init__(self) -> None:
        self.count = 0
        self.installed = False

    def __enter__(self) -> InterruptWhileClosing:
        global _previous_sigint
        if threading.current_thread() is not threading.main_thread():
            return self  # signals are only handled on the main thread
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):
            return self  # Ctrl-C is ignored (or not ours to handle): leave it that way
        _previous_sigint = previous
        signal.signal(signal.SIGINT, self._on_sigint)
        self.installed = True
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            raise StopWaiting

    def __exit__(self, *exc_info: Any) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, _previous_sigint)


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
    previous = _previous_sigint if signum == signal.SIGINT else _previous_sigterm
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    if signum == signal.SIGINT and _interactive():
        raise KeyboardInterrupt  # a REPL or notebook survives Ctrl-C: stop only what it was doing
    # Default disposition (Python's Ctrl-C handler included): die of the signal so the parent
    # sees the real exit status, after flushing what the program printed.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or "ipykernel" in sys.modules
