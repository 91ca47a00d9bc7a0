"""The error hierarchy: one root class, subclasses that build their own messages.

How every command line reports a user error lives here too, at the bottom of the layers so any
entry point can use it: one ``error: ...`` line on stderr, exit status 2 (:func:`user_errors`).
A user error is a :class:`CodexMLError`; anything else is a bug and keeps its traceback. Used by
the Typer app (``codex-ml``), the Hydra CLI, the shared tracking flags, ``tools/`` and ``deploy/``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: The exit status of a user error (argparse and click use 2 for bad arguments too).
EXIT_USER_ERROR = 2


class CodexMLError(Exception):
    """Root of every error codex_ml raises on purpose."""


class RunNameError(CodexMLError, ValueError):
    """A run name that is empty or would escape the output root."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            f"invalid run name {name!r}: {why}. Use a plain name such as 'demo' or 'exp-1' "
            "(letters, digits, '-', '_', '.'; no path separators)."
        )


class OutputRootError(CodexMLError, OSError):
    """The output root cannot be created or written."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(
            f"cannot write runs under {path!r}: {why}. Choose another directory with "
            "--output-root, or fix its permissions."
        )


class MissingExtraError(CodexMLError, ImportError):
    """A sink or feature was requested but its optional package is not installed."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'codex-ml[{extra}]' "
            "(or leave the sink off; the NDJSON log is always written)."
        )
        self.extra = extra


class RunClosedError(CodexMLError, RuntimeError):
    """Logging to a run that has already been closed."""

    def __init__(self, run_name: str) -> None:
        super().__init__(f"run {run_name!r} is closed; start a new run (or resume=True) to log more")


class CorruptRecordError(CodexMLError, ValueError):
    """A line of an NDJSON file that is not a valid record."""

    def __init__(self, path: str, line: int, why: str) -> None:
        super().__init__(f"{path}:{line}: {why}")
        self.path = path
        self.line = line


class RunInUseError(CodexMLError, RuntimeError):
    """Opening a run directory that a live process is writing (a run has one writer at a time)."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(
            f"the run at {path} is in use: {holder} is writing it, and a run has one writer at a time. "
            "Wait for that process to end (or stop it), then continue the run with --resume; "
            "or choose another name with --run-name."
        )
        self.path = path
        self.holder = holder


def print_error(message: object) -> int:
    """Print ``error: <message>`` on stderr; returns :data:`EXIT_USER_ERROR`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


@contextmanager
def user_errors() -> Iterator[None]:
    """A CodexMLError raised inside becomes one ``error:`` line and ``SystemExit(2)``."""
    try:
        yield
    except CodexMLError as exc:
        print_error(exc)
        # A subclass may name its own status (a run stopped by a health rule exits 3).
        raise SystemExit(getattr(exc, "exit_code", EXIT_USER_ERROR)) from None
