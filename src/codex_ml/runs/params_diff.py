"""Which params differ between runs: shared by ``runs compare`` (its table) and the ``runs list``
table (the columns worth showing). Light: json only, so the warm list/query path stays cheap."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ABSENT", "MISSING", "differing"]

#: How a param or metric that a run does not have is shown in the tables.
MISSING = "—"


class _Absent:
    """The value of a param a run does not have (unlike None, which a param can hold)."""

    def __repr__(self) -> str:
        return MISSING


#: Stands for a param a run does not have in :func:`differing`.
ABSENT = _Absent()


def differing(param_sets: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every param (sorted) whose value is not the same in all the given flattened param dicts: its
    value per dict, in order, :data:`ABSENT` where missing. Numbers compare by value (1 == 1.0)."""
    keys = sorted({key for params in param_sets for key in params})
    found = {}
    for key in keys:
        values = [params.get(key, ABSENT) for params in param_sets]
        if ABSENT in values or len({_canonical(value) for value in values}) > 1:
            found[key] = values
    return found


def _canonical(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, sort_keys=True, default=str)
