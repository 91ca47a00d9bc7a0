"""Hot-path validation of metric dicts and steps.

Checks are done by type name and duck typing so that numpy and torch are never imported
here. Everything is validated before anything is enqueued: a bad value raises and nothing
of that call is written.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def coerce_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """Return a private copy of ``metrics`` with every value a plain int or float.

    Raises TypeError naming the key for bools, strings, None, containers and multi-element
    arrays or tensors; 0-d numpy and torch scalars are converted with ``.item()``.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    out: dict[str, float | int] = {}
    for key, value in metrics.items():
        if type(key) is not str:
            raise TypeError(f"metric names must be str, got {type(key).__name__} {key!r}")
        kind = type(value)
        # The fast path covers nearly every call: plain floats and small ints.
        if kind is float or (kind is int and INT64_MIN <= value <= INT64_MAX):
            out[key] = value
        else:
            out[key] = coerce_value(key, value)
    if "" in out:
        raise ValueError("metric names must not be empty")
    return out


def coerce_value(key: str, value: Any) -> float | int:
    """Convert one metric value to int/float or raise TypeError naming ``key``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        return _int_as_float(key, value)  # outside int64: keep it, as a float
    if hasattr(value, "item") and hasattr(value, "shape"):
        return _coerce_array_scalar(key, value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__}")


def _coerce_array_scalar(key: str, value: Any) -> float | int:
    # numpy scalars and 0-d arrays/tensors have shape (); anything bigger is ambiguous.
    shape = tuple(value.shape)
    if shape != ():
        raise TypeError(
            f"metric {key!r}: expected a scalar, got a {type(value).__name__} of shape {shape}; "
            "log a 0-d value or reduce it first (e.g. .mean().item())"
        )
    item = value.item()
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        raise TypeError(f"metric {key!r}: expected a real number, got {type(item).__name__} {item!r}")
    if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
        return _int_as_float(key, item)
    return item


def _int_as_float(key: str, value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"metric {key!r}: an integer of {value.bit_length()} bits is beyond the float range and cannot be stored") from None


def coerce_step(step: Any) -> int:
    """Return ``step`` as a Python int in int64 range, or raise TypeError/ValueError."""
    if type(step) is not int:
        if isinstance(step, bool) or isinstance(step, float) or not hasattr(step, "__index__"):
            raise TypeError(f"step must be an integer, got {type(step).__name__} {step!r}")
        step = step.__index__()  # numpy/torch integer scalars
    if not INT64_MIN <= step <= INT64_MAX:
        raise ValueError(f"step {step} is outside the int64 range [-2**63, 2**63-1] that backends store")
    return step


def check_name(name: Any, what: str) -> str:
    """Validate a histogram/text/tag name: a non-empty str."""
    if type(name) is not str:
        raise TypeError(f"{what} name must be str, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError(f"{what} name must not be empty")
    return name
