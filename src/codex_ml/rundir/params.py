"""Flattening nested params/config into ``dotted.key -> value`` pairs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested mappings (and dataclasses) to one level; lists stay values.

    Non-JSON scalars become their ``str``; None, bool, int, float and str are kept.
    """
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping (or dataclass), got {type(params).__name__}")
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name, sep))
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return str(value)
