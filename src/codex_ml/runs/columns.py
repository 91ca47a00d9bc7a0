"""``--columns`` of ``codex-ml runs list|query``: field names in the query language's spelling.

``name``, ``status``, ``start``, ``duration``, ``sinks``, ``run_id``, ``params.<key>``,
``tags.<key>``, ``metrics.<key>.<last|min|max|mean|count>`` (bare ``metrics.<key>`` is
``.last``), with odd keys quoted as in ``--where`` (``metrics."key with space".max``). Parsed by
the query language's own field parser (``codex_ml.runs.where_fields``), then checked against
what the runs hold: an unknown column is one error naming it and the columns there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.runs.where_fields import AGGREGATES, parse_field
from codex_ml.runs.where_tokens import tokenize

__all__ = ["RUN_COLUMNS", "Column", "UnknownColumnError", "available", "parse_columns"]

#: Columns of the runs table, in display order (``sinks``, ``run_id`` and ``path`` are extra to --where).
RUN_COLUMNS = ("name", "status", "start", "duration", "sinks", "run_id", "path")
#: At most this many column names are listed in an error.
_LISTED = 40


class UnknownColumnError(CodexMLError, ValueError):
    """A ``--columns`` entry that names no field of the runs."""

    def __init__(self, column: str, known: list[str]) -> None:
        more = f", ... ({len(known) - _LISTED} more)" if len(known) > _LISTED else ""
        super().__init__(f"--columns: unknown column {column!r}; available: {', '.join(known[:_LISTED])}{more}")


@dataclass(frozen=True)
class Column:
    """One output column: ``kind`` is 'run', 'param', 'tag' or 'metric'; ``text`` its heading."""

    text: str
    kind: str
    key: str
    agg: str | None = None


def metric_column(key: str, agg: str = "last") -> Column:
    """The column of one aggregate of a metric (heading ``metrics.<key>.<agg>``)."""
    return Column(f"metrics.{_quoted(key)}.{agg}", "metric", key, agg)


def param_column(key: str) -> Column:
    """The column of a param."""
    return Column(f"params.{_quoted(key, False)}", "param", key)


def tag_column(key: str) -> Column:
    """The column of a tag."""
    return Column(f"tags.{_quoted(key, False)}", "tag", key)


def available(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``{"params": keys, "tags": keys, "metrics": keys}`` found in any of ``records`` (sorted)."""
    found: dict[str, set[str]] = {"params": set(), "tags": set(), "metrics": set()}
    for record in records:
        for section, keys in found.items():
            keys.update(record[section])
    return {section: sorted(keys) for section, keys in found.items()}


def parse_columns(text: str, keys: dict[str, list[str]]) -> list[Column]:
    """The columns ``text`` names, checked against ``keys`` (from :func:`available`)."""
    tokens = [t for t in tokenize(text, "--columns") if t.kind != "end"]
    out: list[Column] = []
    for token in tokens:
        if token.kind == "op" and token.text == ",":
            continue
        if token.kind != "word":
            raise UnknownColumnError(token.text, _known(keys))
        out.append(_column(token, text, keys))
    if not out:
        raise CodexMLError("--columns: no column given; e.g. --columns name,status,metrics.train/loss.min")
    return out


def _column(token: Any, text: str, keys: dict[str, list[str]]) -> Column:
    if token.lower() in RUN_COLUMNS:
        return Column(token.lower(), "run", token.lower())
    try:
        field = parse_field(token, text, "--columns")
    except CodexMLError:
        raise UnknownColumnError(token.text, _known(keys)) from None
    if field.kind == "run":
        return Column(field.root, "run", field.root)
    if field.step is not None:
        raise CodexMLError(f"--columns: {token.text!r}: a value at a step is a --where field, not a column; "
                           f"use metrics.{_quoted(field.key or '')}.last (or .min, .max, .mean, .count)")
    section = {"param": "params", "tag": "tags", "metric": "metrics"}[field.kind]
    if field.key not in keys[section]:
        raise UnknownColumnError(token.text, _known(keys))
    if field.kind == "metric":
        return metric_column(field.key, field.agg or "last")
    return param_column(field.key) if field.kind == "param" else tag_column(field.key)


def _known(keys: dict[str, list[str]]) -> list[str]:
    return [*RUN_COLUMNS, *(param_column(k).text for k in keys["params"]), *(tag_column(k).text for k in keys["tags"]),
            *(f"metrics.{_quoted(k)}[.{'|.'.join(AGGREGATES)}]" for k in keys["metrics"])]


def _quoted(key: str, metric: bool = True) -> str:
    """``key`` as a field spells it: quoted when the field parser would read it otherwise (a
    space, an operator, a quote, an '@', an empty segment, or a last segment naming an aggregate)."""
    segments = key.split(".")
    plain = (all(segments) and (not metric or segments[-1] not in AGGREGATES)
             and not any(ch.isspace() or ch in "=!<>~(),'\"@" for ch in key))
    return key if plain else '"' + key.replace('"', '""') + '"'
