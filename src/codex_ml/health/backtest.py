"""Replaying a finished run's files through the health rules: when each would have fired.

The run's ``metrics.ndjson`` and its rank-0 system-metrics file (named in run.json) are merged
in time order and fed to a :class:`~codex_ml.health.monitor.HealthMonitor`, with a tick at each
record's time before the record itself (live, the watchdog ticks about once a second, so a
stall shows up here at the first record after its limit, or at a system sample during it).
A run that did not finish (FAILED, killed) gets a last tick at its end time. Live and backtest
run the same rules on the same records, so with ``action=log`` they raise the same events.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.health.config import HealthConfig
from codex_ml.health.events import HealthEvent, read_events
from codex_ml.health.monitor import HealthMonitor
from codex_ml.rundir.encoding import decode_metrics_values
from codex_ml.rundir.paths import CHECKPOINTS_DIR, RunPaths
from codex_ml.rundir.reader import ReadReport, iter_records
from codex_ml.rundir.records import METRICS, SYSTEM
from codex_ml.rundir.rewinds import Rewind, read_rewinds, superseded
from codex_ml.rundir.run_files import read_json
from codex_ml.rundir.system_samples import flatten_sample

__all__ = ["BacktestInputError", "BacktestReport", "backtest", "backtest_report", "system_file"]

#: run.json's list of system-metrics paths (codex_ml.tracking.system_files.RUN_KEY).
_RUN_KEY = "system_metrics"


class BacktestInputError(CodexMLError, ValueError):
    """A path that is not a run directory with a metrics log."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(f"{path}: {why}")


@dataclass
class BacktestReport:
    """What a backtest found: the events, what it read, and the events the run recorded live."""

    run_dir: str
    rules: list[str]
    events: list[HealthEvent]
    metrics_records: int = 0
    system_samples: int = 0
    system_file: str | None = None
    recorded: list[HealthEvent] = field(default_factory=list)
    rule_errors: list[tuple[str, str]] = field(default_factory=list)
    unreadable_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "run": self.run_dir, "rules": self.rules, "metrics_records": self.metrics_records,
            "system_samples": self.system_samples, "system_file": self.system_file,
            "events": [e.to_json() for e in self.events], "recorded_events": len(self.recorded),
            "rule_errors": [{"rule": r, "error": e} for r, e in self.rule_errors],
            "unreadable_lines": self.unreadable_lines,
        }  # fmt: skip


def backtest(run_dir: str | os.PathLike[str], config: HealthConfig | None = None, *,
             rewound: bool = False) -> list[HealthEvent]:  # fmt: skip
    """The events ``config``'s rules (default: the built-in defaults) raise over ``run_dir``."""
    return backtest_report(run_dir, config, rewound=rewound).events


def backtest_report(run_dir: str | os.PathLike[str], config: HealthConfig | None = None, *,
                    rewound: bool = False) -> BacktestReport:  # fmt: skip
    """:func:`backtest` with what it read and the run's own recorded events.

    The metrics are the surviving timeline: records a rollback superseded (``codex_ml.rundir.rewinds``)
    are left out, so each step is seen once, as training finally ran it. The event that caused the
    rollback was on a superseded step, so it is in ``recorded`` but not found again; ``rewound=True``
    replays every line as it was logged (and finds it).
    """
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise BacktestInputError(run_dir, "no such run directory (give one such as runs/demo)")
    if not paths.metrics.is_file():
        raise BacktestInputError(run_dir, f"not a codex_ml run directory (no {paths.metrics.name} in it)")
    run_info = read_json(paths.run_file)
    monitor = HealthMonitor(config)
    sys_path = system_file(paths, run_info)
    report = BacktestReport(str(paths.root), monitor.names(), [], system_file=None if sys_path is None else str(sys_path))
    reads = [ReadReport(str(paths.metrics))]
    rewinds = [] if rewound else read_rewinds(paths)
    streams = [_metrics_records(paths.metrics, reads[0], report, rewinds)]
    if sys_path is not None:
        reads.append(ReadReport(str(sys_path)))
        streams.append(_system_records(sys_path, reads[1], report))
    events: list[HealthEvent] = []
    for _, _, record in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        events += monitor.tick(record[2])
        events += monitor.observe(record)
    end_time = run_info.get("end_time")
    if run_info.get("status") != "FINISHED" and isinstance(end_time, (int, float)):
        events += monitor.tick(float(end_time))  # a killed or failed run: was it stalled at the end?
    report.events, report.rule_errors = events, list(monitor.errors)
    report.unreadable_lines = sum(len(r.bad_lines) for r in reads)
    report.recorded = read_events(paths.events)
    return report


def system_file(paths: RunPaths, run_info: dict[str, Any]) -> Path | None:
    """The run's rank-0 system-metrics file: the first one run.json records, else
    ``system_metrics.jsonl`` in the run directory or ``checkpoints/`` (runs from before the record)."""
    entries = run_info.get(_RUN_KEY)
    recorded = [e for e in entries if isinstance(e, str) and e] if isinstance(entries, list) else []
    candidates = [Path(e) if os.path.isabs(e) else paths.root / e for e in recorded]
    candidates += [paths.system_metrics, paths.root / CHECKPOINTS_DIR / paths.system_metrics.name]
    return next((c for c in candidates if c.is_file()), None)


def _metrics_records(path: Path, read: ReadReport, report: BacktestReport,
                     rewinds: list[Rewind]) -> Iterator[tuple[float, int, tuple]]:  # fmt: skip
    # (time, order, record): order keeps file order among equal times, metrics before system.
    for order, raw in enumerate(iter_records(path, read)):
        if not isinstance(raw.get("metrics"), dict) or not isinstance(raw.get("step"), int):
            continue  # not a metrics record (a legacy line)
        try:
            values = decode_metrics_values(raw["metrics"])
            wall_time = float(raw["time"])
        except (KeyError, TypeError, ValueError):
            read.bad_lines.append((order + 1, "bad metrics record"))
            continue
        if rewinds and superseded(raw["step"], wall_time, rewinds):
            continue  # a rollback replaced it: the step is seen once, as it was trained again
        report.metrics_records += 1
        yield wall_time, 2 * order, (METRICS, raw["step"], wall_time, values)


def _system_records(path: Path, read: ReadReport, report: BacktestReport) -> Iterator[tuple[float, int, tuple]]:
    for order, raw in enumerate(iter_records(path, read)):
        try:
            wall_time = float(raw["time"])
        except (KeyError, TypeError, ValueError):
            continue
        flat = flatten_sample(raw)  # named as the sampler names them live
        report.system_samples += 1
        yield wall_time, 2 * order + 1, (SYSTEM, raw.get("sample", order), wall_time, flat)
