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
    if name.startswith(".."):  # MLflow rejects any name that starts with '..'
        name = "_" + name[1:]
    if len(name) > MLFLOW_MAX_KEY:
        name = name[: MLFLOW_MAX_KEY - 9] + "-" + _digest(key)
    return name


def _safe_segment(segment: str) -> str:
    if segment in ("", ".", ".."):
        return "_" * max(1, len(segment))
    return segment


class KeyMapper:
    """Caches a naming rule and resolves collisions (two keys, one backend name).

    With ``path_like=True`` (MLflow's file store, where a name is a file path) a name that
    would be both a file and a folder (``a`` and ``a/b``) also counts as a collision.
    ``known`` preloads mappings saved by an earlier session so names stay stable on resume.
    """

    def __init__(
        self,
        rule: Callable[[str], str],
        on_collision: Callable[[str], None],
        max_len: int = MLFLOW_MAX_KEY,
        path_like: bool = False,
        known: dict[str, str] | None = None,
    ) -> None:
        self._rule = rule
        self._on_collision = on_collision
        self._max_len = max_len
        self._path_like = path_like
        self._cache: dict[str, str] = {}
        self._owner: dict[str, str] = {}
        self._folders: set[str] = set()
        #: Keys whose backend name differs from the key, to save for a resume.
        self.renamed: dict[str, str] = {}
        for key, name in (known or {}).items():
            self._claim(key, name)

    def __call__(self, key: str) -> str:
        """The backend name of ``key``; stable for the life of the mapper."""
        name = self._cache.get(key)
        if name is not None:
            return name
        name = self._rule(key)
        why = self._conflict(key, name)
        if why:
            self._on_collision(why)
            name = name.replace("/", "_")[: self._max_len - 9] + "-" + _digest(key)
        self._claim(key, name)
        return name

    def _conflict(self, key: str, name: str) -> str | None:
        owner = self._owner.get(name)
        if owner is not None and owner != key:
            return f"metric names {owner!r} and {key!r} both map to {name!r}; using a hashed name for the second"
        if self._path_clash(name):
            return (f"metric name {key!r} maps to {name!r}, which would be both a file and a folder in "
                    "MLflow's file store; using a hashed name")
        return None

    def _claim(self, key: str, name: str) -> None:
        self._owner[name] = key
        self._cache[key] = name
        if name != key:
            self.renamed[key] = name
        parts = name.split("/")
        self._folders.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def _path_clash(self, name: str) -> bool:
        if not self._path_like:
            return False
        parts = name.split("/")
        parents = ("/".join(parts[:i]) for i in range(1, len(parts)))
        return name in self._folders or any(p in self._owner for p in parents)
