"""The one place that prints monitoring problems.

Every sink failure is a single stderr line ``[monitoring-error] <sink>: <why>``, printed
once per failure streak, and kept for summary.json. Messages often quote what a backend
said, which can hold a URL with a password or a token: each one passes through
:func:`~codex_ml.secrets.redaction.redact_text` before it is printed or kept.
"""

from __future__ import annotations

import sys
import threading

from codex_ml.secrets.redaction import redact_text


class Reporter:
    """Collects and prints monitoring errors and warnings for one run."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name
        self.errors: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def error(self, sink: str, why: str) -> None:
        """Print and keep one ``[monitoring-error]`` line (secrets masked)."""
        why = redact_text(why)
        with self._lock:
            self.errors.append({"sink": sink, "error": why})
        print(f"[monitoring-error] {sink}: {why}", file=sys.stderr, flush=True)

    def warn(self, sink: str, message: str) -> None:
        """Print one ``[monitoring] <sink>: ...`` warning that is not a failure (secrets masked)."""
        print(f"[monitoring] {sink}: {redact_text(message)}", file=sys.stderr, flush=True)
