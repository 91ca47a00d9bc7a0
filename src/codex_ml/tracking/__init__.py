"""Experiment tracking: one Run fanning out to the NDJSON log and optional sinks.

>>> from codex_ml.tracking import start_run
>>> with start_run("demo", enable_tensorboard=True) as run:   # doctest: +SKIP
...     run.log_metrics({"train/loss": 2.1}, step=1)
"""

from __future__ import annotations

from codex_ml.tracking.config import TrackingConfig
from codex_ml.rundir.paths import RunPaths
from codex_ml.tracking.run import CloseReport, Run, RunExistsError, start_run
from codex_ml.rundir.sink import RunInfo, Sink

__all__ = ["CloseReport", "Run", "RunExistsError", "RunInfo", "RunPaths", "Sink", "TrackingConfig", "start_run"]
