"""Telling the user where a run's data went and how to look at it.

Each backend's line comes from its module's ``view_line`` (``codex_ml.backends``).

Only what is really there is offered: a backend that wrote nothing (W&B disabled, a sink that
never started) gets a line saying so instead of a command that would open an empty or missing
folder. An MLflow server is shown by its URL, never with the credentials the URI may have had.
"""

from __future__ import annotations

from typing import Any

from codex_ml.backends import BACKENDS
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.run_files import read_json


def describe_outputs(paths: RunPaths, sinks: list[str]) -> list[str]:
    """Human-readable lines: each output's location and the command that views it."""
    lines = [
        f"Run directory:  {paths.root}",
        f"  metrics log:  {paths.metrics}   (codex_ml's source of truth, NDJSON)",
        f"  summary:      {paths.summary}",
    ]
    saved = _saved_backends(paths)
    for name, row in BACKENDS.items():
        view_line = getattr(row.load(), "view_line", None) if name in sinks else None
        if view_line is not None:
            lines.append(view_line(paths, saved.get(name)))
    return lines


def _saved_backends(paths: RunPaths) -> dict[str, Any]:
    backends = read_json(paths.run_file).get("backends", {})
    return backends if isinstance(backends, dict) else {}
