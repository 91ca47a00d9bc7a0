"""Where a run's system-metrics files are: recorded in run.json, found again by the readers.

The sampler writes wherever ``--system-metrics`` says: ``AUTO`` is next to the checkpoints
(the run root for ``start_run``, ``checkpoints/`` for ``train-model``), a relative path is
under that folder, an absolute one anywhere. Under DDP rank k writes
``<stem>.rank<k><suffix>`` beside rank 0's file. So the run records each path it samples
into (``run.json`` key ``system_metrics``: a list, one entry per distinct path over all
sessions; relative to the run directory when inside it, so a moved run still finds them),
and the readers take every recorded file with its rank siblings, plus, for runs written
before the record existed, ``system_metrics*.jsonl`` in the run root and ``checkpoints/``.
Light: no numpy, no backends.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from codex_ml.rundir.paths import CHECKPOINTS_DIR

__all__ = ["RUN_KEY", "is_rank_file", "recorded_paths", "system_metrics_files", "with_recorded"]

#: The run.json key listing the system-metrics paths of the run.
RUN_KEY = "system_metrics"
#: Where runs written before the record existed keep their files, relative to the run directory.
FALLBACK_DIRS = (".", CHECKPOINTS_DIR)
FILE_GLOB = "system_metrics*.jsonl"
_RANK = re.compile(r"^(?P<stem>.+)\.rank(?P<rank>\d+)$")


def with_recorded(previous: Any, path: Path, run_dir: Path) -> list[str]:
    """run.json's ``system_metrics`` list with ``path`` added (kept once, in first-use order)."""
    entry = _entry(path, run_dir)
    before = [item for item in previous if isinstance(item, str)] if isinstance(previous, list) else []
    return before if entry in before else [*before, entry]


def recorded_paths(run_dir: Path, run_info: dict[str, Any]) -> list[Path]:
    """The paths run.json records (relative entries anchored at ``run_dir``)."""
    entries = run_info.get(RUN_KEY)
    if not isinstance(entries, list):
        return []
    paths = [item for item in entries if isinstance(item, str) and item]
    return [Path(item) if os.path.isabs(item) else run_dir / item for item in paths]


def system_metrics_files(run_dir: Path, run_info: dict[str, Any]) -> list[Path]:
    """Every existing system-metrics file of the run: recorded ones first (each followed by its
    rank files), then any other ``system_metrics*.jsonl`` in the run root or ``checkpoints/``."""
    found: list[Path] = []
    for base in recorded_paths(run_dir, run_info):
        found += [base, *_rank_siblings(base)]
    for folder in FALLBACK_DIRS:
        found += sorted((run_dir / folder).glob(FILE_GLOB), key=_order)
    seen: set[str] = set()
    files = []
    for path in found:
        key = os.path.realpath(path)
        if key not in seen and path.is_file():
            seen.add(key)
            files.append(path)
    return files


def is_rank_file(path: Path) -> bool:
    """True for a DDP rank k > 0 file (``system_metrics.rank3.jsonl``): its samples are that
    rank's own and were never forwarded to the run's sinks."""
    return _RANK.match(Path(path).stem) is not None


def _rank_siblings(base: Path) -> list[Path]:
    candidates = base.parent.glob(f"{_glob_escape(base.stem)}.rank*{_glob_escape(base.suffix)}")
    return sorted((p for p in candidates if _rank_of(p) is not None), key=_order)


def _rank_of(path: Path) -> int | None:
    match = _RANK.match(path.stem)
    return int(match.group("rank")) if match else None


def _order(path: Path) -> tuple[str, int, str]:
    # system_metrics.jsonl, then .rank1, .rank2, ..., .rank10 (numeric, not text, order).
    match = _RANK.match(path.stem)
    stem, rank = (match.group("stem"), int(match.group("rank"))) if match else (path.stem, 0)
    return stem, rank, path.name


def _entry(path: Path, run_dir: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(run_dir))).as_posix()
    except ValueError:
        return str(absolute)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
