"""The NDJSON record encoding (schema version 1).

Non-finite floats are not valid JSON, so they are written as the JSON strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (the spellings ``float()`` parses) wherever a
number is expected. Metric values are always numbers, so a string there can only mean
one of these three. See docs/run-directory.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

SCHEMA_VERSION = 1

_NONFINITE_TO_STR = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_STR_TO_FLOAT = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_number(value: float | int) -> float | int | str:
    """Return ``value`` unchanged if finite, else its string spelling."""
    if type(value) is float and not math.isfinite(value):
        return _NONFINITE_TO_STR[repr(value)]
    return value


def decode_number(value: Any) -> float | int:
    """Inverse of :func:`encode_number`; raises ValueError for anything else."""
    if type(value) in (int, float):
        return value
    if isinstance(value, str) and value in _STR_TO_FLOAT:
        return _STR_TO_FLOAT[value]
    raise ValueError(f"expected a number or 'NaN'/'Infinity'/'-Infinity', got {value!r}")


def encode_metrics(step: int, wall_time: float, metrics: dict[str, float | int]) -> bytes:
    """One metrics line (with the trailing newline)."""
    values = {k: encode_number(v) for k, v in metrics.items()}
    return _dumps_line({"v": SCHEMA_VERSION, "step": step, "time": wall_time, "metrics": values})


def encode_record(record: dict[str, Any]) -> bytes:
    """Any other record (histogram, text): a dict with plain JSON values, plus the version."""
    return _dumps_line({"v": SCHEMA_VERSION, **record})


def _dumps_line(obj: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(obj) + b"\n"
    except orjson.JSONEncodeError:
        # orjson refuses strings that are not valid Unicode (a lone surrogate such as
        # "\ud800", which Python strings can hold). JSON can still carry them as \u escapes,
        # and Python's json reads them back verbatim, so fall back to the stdlib encoder.
        return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii") + b"\n"


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float spelled as :func:`encode_number` does (for JSON files)."""
    if type(obj) is float:
        return encode_number(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def decode_metrics_values(raw: dict[str, Any]) -> dict[str, float | int]:
    """Decode the ``metrics`` object of a metrics record."""
    return {k: decode_number(v) for k, v in raw.items()}
