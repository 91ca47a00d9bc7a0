"""What ``codex-ml monitoring health`` reads and prints: the ``--rules`` file and the event table.

rich is imported inside :func:`render` only (the command's output), never at import time.
"""

from __future__ import annotations

import os
import time
from typing import Any

from codex_ml.config_schema import read_yaml_file
from codex_ml.health.backtest import BacktestReport
from codex_ml.health.config import HealthConfig, HealthConfigError

__all__ = ["load_rules_file", "render"]


def load_rules_file(path: str | os.PathLike[str] | None) -> HealthConfig:
    """The config of a YAML file holding a top-level ``health:`` mapping (None: the defaults)."""
    if path is None:
        return HealthConfig()
    document = read_yaml_file(path)
    if not isinstance(document, dict) or "health" not in document:
        raise HealthConfigError([f"{path}: expected a top-level 'health:' mapping (docs/health.md)"])
    return HealthConfig.from_mapping(document["health"], "health")


def render(report: BacktestReport, console: Any) -> None:
    """A headline, then one row per event (step, clock time, rule, severity, metric, value, message)."""
    console.print(_headline(report), highlight=False)
    for rule, error in report.rule_errors:
        console.print(f"rule {rule} raised and was switched off: {error}", style="red", highlight=False)
    if not report.events:
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("step", "time (UTC)", "rule", "severity", "metric", "value", "threshold", "action", "message"):
        table.add_column(column, overflow="fold")
    for e in report.events:
        table.add_row("" if e.step is None else str(e.step), time.strftime("%H:%M:%S", time.gmtime(e.time)), e.rule,
                      e.severity, e.metric or "", _num(e.value), _num(e.threshold), e.action, e.message)
    console.print(table)


def _headline(report: BacktestReport) -> str:
    read = f"{report.metrics_records:,} metrics records"
    if report.system_file is not None:
        read += f" and {report.system_samples:,} system samples"
    found = f"{len(report.events)} event{'s' if len(report.events) != 1 else ''}" if report.events else "no events"
    live = f"; the run recorded {len(report.recorded)} live" if report.recorded else ""
    bad = f"; {report.unreadable_lines} unreadable lines skipped" if report.unreadable_lines else ""
    return f"{report.run_dir}: {found} from {len(report.rules)} rules over {read}{live}{bad}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
