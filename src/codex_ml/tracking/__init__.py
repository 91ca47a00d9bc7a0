"""Experiment tracking: one Run fanning out to the NDJSON log and optional sinks.

>>> from codex_ml.tracking import start_run
>>> with start_run("demo", enable_tensorboard=True) as run:   # doctest: +SKIP
...     run.log_metrics({"train/loss": 2.1}, step=1)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["CloseReport", "Run", "RunExistsError", "RunInfo", "RunPaths", "Sink", "TrackingConfig", "start_run"]

# Where each public name lives. Imported on first use (PEP 562): the read-back commands import only
# ``tracking.system_files``, and importing the run (health rules, run lock, sink process) with it cost
# a cold ``codex-ml monitoring inspect RUN`` 15-35 ms (docs/benchmarks.md, "Monitoring CLI").
_HOMES = {
    "TrackingConfig": "codex_ml.tracking.config", "RunPaths": "codex_ml.rundir.paths",
    "CloseReport": "codex_ml.tracking.run", "Run": "codex_ml.tracking.run",
    "RunExistsError": "codex_ml.tracking.run", "start_run": "codex_ml.tracking.run",
    "RunInfo": "codex_ml.rundir.sink", "Sink": "codex_ml.rundir.sink",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
