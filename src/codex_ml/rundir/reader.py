"""Reading run NDJSON files back, tolerant of a torn last line.

A process killed mid-write can leave a last line without its newline. Readers report it
and go on; a bad line anywhere else is reported with its line number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from codex_ml.errors import CorruptRecordError
from codex_ml.rundir.encoding import decode_metrics_values
from codex_ml.rundir.rewinds import rewinds_beside, superseded


@dataclass
class ReadReport:
    """What a read found besides good records."""

    path: str
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    torn_tail: bool = False


def iter_records(path: str | os.PathLike[str], report: ReadReport | None = None) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of an NDJSON file.

    Bad lines are skipped and noted in ``report`` (with 1-based line numbers); a last line
    with no newline that does not parse is noted as ``torn_tail``. Pass ``report=None`` to
    raise CorruptRecordError on the first bad line instead (a torn tail is still skipped).
    """
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = _loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except (orjson.JSONDecodeError, ValueError) as exc:
                if not line.endswith(b"\n"):
                    if report is not None:
                        report.torn_tail = True
                    return
                if report is None:
                    raise CorruptRecordError(str(path), lineno, f"not a JSON object record ({exc})") from exc
                report.bad_lines.append((lineno, str(exc)))
                continue
            yield record


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        if b"\\ud" not in line and b"\\uD" not in line:
            raise
        # A lone surrogate escape ("\ud800"), which the writer emits for strings that are not
        # valid Unicode: orjson refuses it, the stdlib decoder reads it back verbatim.
        return json.loads(line)


def read_metrics(path: str | os.PathLike[str], report: ReadReport | None = None, *,
                 rewound: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Read a metrics NDJSON file into records with decoded (float) values.

    The records a rollback superseded (codex_ml.rundir.rewinds: the run's events.ndjson holds a
    rewind) are left out, so each step appears once; ``rewound=True`` keeps every line.
    """
    rewinds = [] if rewound else rewinds_beside(path)
    out = []
    for record in iter_records(path, report):
        if rewinds and _superseded(record, rewinds):
            continue
        record["metrics"] = decode_metrics_values(record.get("metrics", {}))
        out.append(record)
    return out


def _superseded(record: dict[str, Any], rewinds: list[Any]) -> bool:
    step, when = record.get("step"), record.get("time")
    return isinstance(step, int) and isinstance(when, (int, float)) and superseded(step, when, rewinds)


def metric_series(path: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """Return ``{metric: [(step, value), ...]}`` in file order (the surviving timeline, as
    :func:`read_metrics` reads it)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(path, ReadReport(str(path))):
        for key, value in record["metrics"].items():
            series.setdefault(key, []).append((record["step"], value))
    return series


def repair_torn_tail(path: str | os.PathLike[str]) -> int:
    """Make ``path`` end on a line boundary before appending; return bytes removed.

    A complete record that only lacks its newline gets the newline; a partial record is
    cut off, so a resumed run never glues its first record onto a torn one.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = _last_line_start(handle, size)
        handle.seek(start)
        tail = handle.read()
        if tail.endswith(b"\n"):
            return 0
        try:
            _loads(tail)
            handle.write(b"\n")
            return 0
        except ValueError:
            handle.truncate(start)
            return len(tail)


def _last_line_start(handle: Any, size: int, chunk: int = 65536) -> int:
    # Scan backwards from the end (skipping the final byte, which may be the newline of a
    # complete last line) so that a huge log is not read whole.
    end = max(size - 1, 0)
    while end > 0:
        begin = max(0, end - chunk)
        handle.seek(begin)
        found = handle.read(end - begin).rfind(b"\n")
        if found != -1:
            return begin + found + 1
        end = begin
    return 0


def last_step(path: str | os.PathLike[str]) -> int | None:
    """The step of the last complete metrics record, or None for an empty/missing file."""
    path = Path(path)
    if not path.exists():
        return None
    step = None
    for record in iter_records(path, ReadReport(str(path))):
        step = record.get("step", step)
    return step
