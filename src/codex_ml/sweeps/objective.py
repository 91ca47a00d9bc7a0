"""The value a trial returns to the sweeper, read from the trial's own ``metrics.ndjson``.

Reading it from the run directory, not from the trainer's return value, gives the same answer
for a trial that just trained and for one a re-run finds FINISHED (its result is not recomputed).
"""

from __future__ import annotations

import math
from pathlib import Path

from codex_ml.errors import CodexMLError

__all__ = ["REDUCTIONS", "SweepError", "check_objective", "objective_value"]

REDUCTIONS = ("min", "max", "last", "mean")


class SweepError(CodexMLError, ValueError):
    """A sweep setting or a trial's directory that does not fit the sweep."""


def check_objective(key: str, reduce: str) -> None:
    """Refuse a reduction we do not know before any trial trains."""
    if reduce not in REDUCTIONS:
        raise SweepError(f"sweep.reduce={reduce!r}: use one of {', '.join(REDUCTIONS)}")
    if not key:
        raise SweepError("sweep.objective is empty: name a metric, e.g. sweep.objective=val/loss")


def objective_value(run_dir: Path, key: str, reduce: str) -> float:
    """``reduce`` (min/max/last/mean) of the finite values of metric ``key`` in the run."""
    from codex_ml.rundir.paths import RunPaths
    from codex_ml.rundir.reader import metric_series

    check_objective(key, reduce)
    points = metric_series(RunPaths(run_dir).metrics).get(key, [])
    values = [v for _, v in points if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        raise SweepError(f"{run_dir}: no finite value of metric {key!r} to return as the objective "
                         "(sweep.objective names a metric the trial logs, e.g. val/loss)")
    if reduce == "last":
        return float(values[-1])
    if reduce == "mean":
        return float(sum(values) / len(values))
    return float(min(values) if reduce == "min" else max(values))
