"""Helpers for the tests that scrape codex_ml's Prometheus exporter (tests/ is on sys.path: conftest.py is here)."""

from __future__ import annotations

import time
from typing import Any

#: Seconds an exporter may take to bind its port.
WAIT = 5.0


def exporter_port(sink: Any, wait: float = WAIT) -> int:
    """The port a started PrometheusSink serves on, once it has bound one (fails after ``wait`` s)."""
    deadline = time.monotonic() + wait
    while sink.bound_address is None:
        assert time.monotonic() < deadline, f"the exporter did not start within {wait:.0f} s"
        time.sleep(0.01)
    return sink.bound_address[1]
