"""A resume's back-fill of one backend: replay what it misses of the run's NDJSON, say what happened.

Called by the trainer's ``start_run`` for a sink it delivers itself, and by a sink process
(sink_host.py) for its own sink before starting it. The replay (``codex_ml.monitoring.replay``)
is bound by name through ``services`` (tracking sits below monitoring). A failure is one
``[monitoring-error]`` line and the run goes on: the NDJSON still has everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.services import RESUME_BACKFILL, service

__all__ = ["backfill"]


def backfill(run_dir: Path, kind: str, config: TrackingConfig, reporter: Any, before: float | None = None) -> None:
    """Send backend ``kind`` the points of ``run_dir``'s NDJSON it misses (only those logged before wall time
    ``before`` when given); report the count sent, or the failure, through ``reporter`` (``error``/``warn``)."""
    try:
        replay = service(RESUME_BACKFILL)
        result = replay(run_dir, kind, tracking_uri=config.mlflow_tracking_uri, experiment=config.mlflow_experiment,
                        progress=False, before=before)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - back-fill is a repair, never a reason to stop
        reporter.error(kind, f"back-fill on resume failed: {type(exc).__name__}: {exc}; "
                             f"run `codex-ml monitoring export RUN --to {kind}` later")  # fmt: skip
        return
    if result.sent:
        reporter.warn(kind, f"resume: back-filled {result.sent:,} points the earlier session(s) had not delivered")
