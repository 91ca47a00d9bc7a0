"""Deterministic mapping of metric/param keys to names a backend accepts.

The NDJSON log keeps every key verbatim. Backends with stricter rules (MLflow allows only
``[A-Za-z0-9_.- /:]``, no ``..`` path segments, at most 250 characters) get a mapped name;
the mapping depends only on the key, and two keys mapping to one name is reported once and
resolved with a hash suffix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

_MLFLOW_BAD_CHARS = re.compile(r"[^/\w.\- :]", re.ASCII)
MLFLOW_MAX_KEY = 250


def _digest(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def mlflow_name(key: str) -> str:
    """The MLflow-legal name for ``key`` (identity for keys MLflow already accepts)."""
    name = _MLFLOW_BAD_CHARS.sub("_", key)
    # MLflow treats names as paths: no empty, '.' or '..' segments, no leading '/'.
    name = "/".join(_safe_segment(seg) for seg in name.split("/"))
    if len(name) > MLFLOW_MAX_KEY:
        name = name[: MLFLOW_MAX_KEY - 9] + "-" + _digest(key)
    return name


def _safe_segment(segment: str) -> str:
    if segment in ("", ".", ".."):
        return "_" * max(1, len(segment))
    return segment


class KeyMapper:
    """Caches a naming rule and reports collisions (two keys, one backend name)."""

    def __init__(self, rule: Callable[[str], str], on_collision: Callable[[str], None], max_len: int = MLFLOW_MAX_KEY) -> None:
        self._rule = rule
        self._on_collision = on_collision
        self._max_len = max_len
        self._cache: dict[str, str] = {}
        self._owner: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        """The backend name of ``key``; stable for the life of the mapper."""
        name = self._cache.get(key)
        if name is not None:
            return name
        name = self._rule(key)
        owner = self._owner.get(name)
        if owner is not None and owner != key:
            self._on_collision(f"metric names {owner!r} and {key!r} both map to {name!r}; using a hashed name for the second")
            name = name[: self._max_len - 9] + "-" + _digest(key)
        self._owner[name] = key
        self._cache[key] = name
        return name
