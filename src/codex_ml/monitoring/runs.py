"""Finding what to read: a run directory or a single NDJSON file, and its errors.

The monitoring commands read only the files documented in docs/run-directory.md (and
docs/system-metrics.md); this module turns a user-given path into those files, or a clear
error naming the path and what to do. Light: no numpy, pyarrow or backends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from codex_ml.errors import CodexMLError
from codex_ml.monitoring.legacy_format import is_legacy_record
from codex_ml.monitoring.metrics_data import METRICS, SYSTEM
from codex_ml.rundir.paths import METRICS_FILE, RUN_FILE, SUMMARY_FILE
from codex_ml.rundir.run_files import read_json  # the one reader of run.json/summary.json; tools import it here


class MonitoringInputError(CodexMLError, ValueError):
    """A path given to a monitoring command that cannot be read as a run or NDJSON file."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = str(path)


class EmptyInputError(MonitoringInputError):
    """A metrics file with no records in it."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "the file is empty (no records); is the run still starting, or was it never written?")


class UnknownFormatError(CodexMLError, ValueError):
    """An output format or backend that the command does not know."""

    def __init__(self, what: str, value: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown {what} {value!r}; choose one of: {', '.join(known)}")


@dataclass
class RunSource:
    """The files of one input: the main NDJSON file, system-metrics files, run metadata.

    ``system_files`` holds every system-metrics file of a run directory, rank 0's (or the
    only one) first, then the other ranks' (``codex_ml.tracking.system_files``).
    """

    label: str
    main: Path
    kind: str
    run_dir: Path | None = None
    system_files: list[Path] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def backends(self) -> dict[str, Any]:
        """Backend state from run.json (MLflow run id and URI, W&B id and project)."""
        return self.run_info.get("backends", {}) or {}


def resolve(path: str | Path) -> RunSource:
    """A run directory or one NDJSON file (metrics or system metrics) as a RunSource."""
    path = Path(path)
    if not path.exists():
        raise MonitoringInputError(path, "no such file or directory (give a run directory such as runs/demo, or an NDJSON file)")
    if path.is_dir():
        return _resolve_dir(path)
    kind = sniff_kind(path)
    return RunSource(label=str(path), main=path, kind=kind)


def _resolve_dir(run_dir: Path) -> RunSource:
    # Imported here: importing any tracking module runs tracking/__init__.py (the whole write
    # side, 15-35 ms of a cold command), which a single NDJSON file does not need.
    from codex_ml.tracking.system_files import system_metrics_files

    metrics = run_dir / METRICS_FILE
    run_info = read_json(run_dir / RUN_FILE)
    # Every rank's file, wherever the run wrote it (run.json's record; root and checkpoints/ for old runs).
    system_files = system_metrics_files(run_dir, run_info)
    if not metrics.exists() and not system_files:
        raise MonitoringInputError(run_dir, f"not a codex_ml run directory (no {METRICS_FILE} or system_metrics.jsonl in it)")
    main, kind = (metrics, METRICS) if metrics.exists() else (system_files[0], SYSTEM)
    if kind == SYSTEM:
        system_files = system_files[1:]
    return RunSource(
        label=str(run_dir),
        main=main,
        kind=kind,
        run_dir=run_dir,
        system_files=system_files,
        run_info=run_info,
        summary=read_json(run_dir / SUMMARY_FILE),
    )


def sniff_kind(path: Path) -> str:
    """``"metrics"`` or ``"system"``, from the first record of an NDJSON file."""
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise MonitoringInputError(f"{path}:1", f"not NDJSON ({exc})") from exc
            if isinstance(record, dict) and "metrics" in record:
                return METRICS
            if is_legacy_record(record):  # the origin toolkit's lines; the loader converts them
                return METRICS
            if isinstance(record, dict) and "sample" in record:
                return SYSTEM
            raise MonitoringInputError(path, "not a codex_ml metrics or system-metrics NDJSON file (first record has no "
                                             "'metrics' or 'sample', nor the legacy 'metric' and 'value')")
    raise EmptyInputError(path)
