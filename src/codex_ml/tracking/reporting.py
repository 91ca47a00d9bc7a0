"""The one place that prints monitoring problems.

Every sink failure is a single stderr line ``[monitoring-error] <sink>: <why>``, printed
once per failure streak, and kept for summary.json.
"""

from __future__ import annotations

import sys
import threading


class Reporter:
    """Collects and prints monitoring errors and warnings for one run."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name
        self.errors: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def error(self, sink: str, why: str) -> None:
        """Print and keep one ``[monitoring-error]`` line."""
        with self._lock:
            self.errors.append({"sink": sink, "error": why})
        print(f"[monitoring-error] {sink}: {why}", file=sys.stderr, flush=True)

    def warn(self, sink: str, message: str) -> None:
        """Print one ``[monitoring] <sink>: ...`` warning that is not a failure."""
        print(f"[monitoring] {sink}: {message}", file=sys.stderr, flush=True)
