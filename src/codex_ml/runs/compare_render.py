"""The tables ``runs compare`` prints for people: the runs, the params that differ, one small
table per compared metric (each run's last / min / max), then what was left out and the image."""

from __future__ import annotations

import json
from typing import Any

from codex_ml.monitoring.console import table_console
from codex_ml.monitoring.inspect import fmt
from codex_ml.runs.compare_data import ABSENT, MISSING, ComparedRun, differing_params

__all__ = ["render"]


def render(runs: list[ComparedRun], result: dict[str, Any], panels: int | None) -> None:
    """Print the comparison ``result`` (``compare.comparison``) of ``runs`` as rich tables."""
    console = table_console(highlight=False)
    for run in runs:
        console.print(f"{run.label}: {run.path} ({run.status or 'no run.json'})", markup=False)
    console.print(_params_table(runs))
    for key, per_run in result["metrics"].items():
        console.print(_metric_table(runs, key, per_run))
    left_out = result["metrics_left_out"]
    if not result["metrics"]:
        console.print("no metric is logged by every run; name some with --metric", markup=False)
    if left_out:
        console.print(f"{len(left_out)} more shared metrics not compared: {', '.join(left_out)} "
                      "(name them with --metric)", markup=False)  # fmt: skip
    if panels is not None:
        console.print(f"wrote {result['image']} ({panels} panel{'s' if panels != 1 else ''})", markup=False)


def _params_table(runs: list[ComparedRun]) -> Any:
    from rich.table import Table

    differing = differing_params(runs)
    shared = len({key for run in runs for key in run.params}) - len(differing)
    table = Table(title=f"params that differ ({len(differing)})", caption=f"{shared} more the same in every run")
    table.add_column("param", no_wrap=True)
    for run in runs:
        table.add_column(run.label, overflow="fold")
    for key, values in differing.items():
        table.add_row(key, *(_param_text(value) for value in values))
    return table


def _param_text(value: Any) -> str:
    if value is ABSENT:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)  # exact: 0.001 and 0.0010000001 must not both print 0.001
    return json.dumps(value, default=str)


def _metric_table(runs: list[ComparedRun], key: str, per_run: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=key)
    for column in ("run", "last", "min", "max", "last step", "points"):
        table.add_column(column, justify="left" if column == "run" else "right", no_wrap=column != "run")
    for run in runs:
        stats = per_run.get(run.label)
        if stats is None:
            table.add_row(run.label, *[MISSING] * 5)
            continue
        table.add_row(run.label, fmt(stats["last"]), fmt(stats["min"]), fmt(stats["max"]), str(stats["last_step"]),
                      str(stats["points"]) + (f" ({stats['non_finite']} NaN/Inf)" if stats["non_finite"] else ""))
    return table
