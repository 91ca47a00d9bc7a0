"""How every command line reports a user error: one ``error: ...`` line on stderr, exit status 2.

A user error is a :class:`codex_ml.errors.CodexMLError`; anything else is a bug and keeps its
traceback. Used by the Typer app (``codex-ml``), the Hydra CLI, ``tools/`` and ``deploy/``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from codex_ml.errors import CodexMLError

__all__ = ["EXIT_USER_ERROR", "print_error", "user_errors"]

#: The exit status of a user error (argparse and click use 2 for bad arguments too).
EXIT_USER_ERROR = 2


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
        raise SystemExit(print_error(exc)) from None
