"""Rewinds: which metrics records a rollback superseded (docs/run-directory.md, "Rewinds").

A ``rollback`` restores the checkpoint of step ``c`` after a rule fired at step ``s`` and trains
on from ``c + 1``. It writes one *rewind* line into ``events.ndjson`` (``"rule": "rewind"``,
``"step": c``, ``"value": s``, ``"time": t``). metrics.ndjson is append-only and keeps every line,
so steps ``c + 1 .. s`` appear twice: once before ``t`` (superseded) and once after (surviving).

The rule, for every rewind ``(t, c)``: a metrics record ``(step, time)`` is superseded when
``time < t`` and ``step > c``. Records at or below ``c`` (the checkpoint's own val loss) never are.
Readers apply it to show the surviving timeline, each step once.

This module sits in ``rundir`` (below health and monitoring), so it reads the event lines itself;
numpy is imported only by :func:`surviving_mask`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from codex_ml.rundir.paths import EVENTS_FILE, RunPaths

__all__ = ["REWIND_RULE", "Rewind", "read_rewinds", "rewinds_beside", "superseded", "surviving_flags", "surviving_mask"]

#: The ``rule`` of a rewind line in events.ndjson.
REWIND_RULE = "rewind"
#: The bytes every rewind line holds; a file without them is not parsed at all (the usual case).
_MARK = b'"rewind"'


@dataclass(frozen=True)
class Rewind:
    """One rollback: at wall time ``time`` the run went back to the checkpoint of ``step``
    (training continues at ``step + 1``); ``from_step`` is the step it rewound from (None if unknown)."""

    time: float
    step: int
    from_step: int | None = None


def read_rewinds(run: str | os.PathLike[str] | RunPaths) -> list[Rewind]:
    """The rewinds of a run directory (or its RunPaths), in file order.

    A missing events.ndjson, a torn last line and lines that are not rewinds are skipped: a
    reader must still show a run whose events file is damaged.
    """
    path = run.events if isinstance(run, RunPaths) else Path(run) / EVENTS_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    if _MARK not in raw:
        return []
    return [r for r in map(_parse, raw.split(b"\n")) if r is not None]


def rewinds_beside(metrics_file: str | os.PathLike[str]) -> list[Rewind]:
    """The rewinds of the run a metrics file belongs to (its folder is the run directory)."""
    return read_rewinds(Path(metrics_file).parent)


def _parse(line: bytes) -> Rewind | None:
    if _MARK not in line:
        return None
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # a lone surrogate escape in the message: orjson refuses it, json reads it
            record = json.loads(line)
        except ValueError:
            return None  # a torn or broken line
    if not isinstance(record, dict) or record.get("rule") != REWIND_RULE:
        return None
    step, when, value = record.get("step"), record.get("time"), record.get("value")
    if type(step) is not int or not isinstance(when, (int, float)) or isinstance(when, bool):
        return None
    from_step = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return Rewind(float(when), step, from_step)


def superseded(step: int, time: float, rewinds: Iterable[Rewind]) -> bool:
    """True when a rewind replaced the record logged at ``time`` for ``step``."""
    return any(time < r.time and step > r.step for r in rewinds)


def surviving_flags(steps: Sequence[int], times: Sequence[float], rewinds: Sequence[Rewind]) -> list[bool]:
    """Per record, True when it is on the surviving timeline (no numpy)."""
    if not rewinds:
        return [True] * len(steps)
    return [not superseded(step, when, rewinds) for step, when in zip(steps, times)]


def surviving_mask(steps: Any, times: Any, rewinds: Sequence[Rewind]) -> Any:
    """:func:`surviving_flags` for numpy arrays: a boolean array, one pass per rewind."""
    import numpy as np

    steps, times = np.asarray(steps), np.asarray(times)
    keep = np.ones(len(steps), dtype=bool)
    for rewind in rewinds:
        keep &= ~((times < rewind.time) & (steps > rewind.step))
    return keep
