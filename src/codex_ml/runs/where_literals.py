"""Values of the ``--where`` language: numbers (``1e-3``), 'single' or "double" quoted strings,
``null``, ``true``/``false``, durations (``90s``, ``5m``, ``2h``, ``1d``; for ``duration``) and
ISO dates or times (``'2026-12-03'``, ``'2026-12-03 14:00'``; for ``start``).

The field on the left decides what a value may be, so a mistake (a quoted number compared with
a metric, a bare word) is reported at the value's column before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from codex_ml.runs.where_fields import Field
from codex_ml.runs.where_tokens import QueryError, Token

NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ms|s|m|h|d)")
SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Literal:
    """A value. ``kind``: 'number' (value: float; ``text`` as written, compared as text with
    name/status), 'string', 'bool', 'null', 'date' (value: date; ``start`` compared by day) or
    'time' (value: naive UTC datetime)."""

    kind: str
    value: Any
    text: str
    column: int


def parse_literal(token: Token, field: Field, expr: str) -> Literal:
    """The value written as ``token`` (a 'word' or 'string' token) for comparing with ``field``."""
    col = token.column
    if token.kind == "string":
        return _string(token.text, field, col, expr)
    if any(piece.quoted for piece in token.pieces):
        raise QueryError(f"expected a value, got {token.text}", col, expr)
    word = token.text.lower()
    if word == "null":
        return Literal("null", None, token.text, col)
    if word in ("true", "false"):
        if field.numeric or field.root == "start":
            raise QueryError(f"{field.text} is not true/false", col, expr)
        return Literal("bool", word == "true", token.text, col)
    if NUMBER.fullmatch(token.text):
        if field.root == "start":
            raise QueryError(f"start takes a 'quoted' ISO date or time, e.g. '2026-12-03 14:00', got {token.text}",
                             col, expr)
        return Literal("number", float(token.text), token.text, col)
    if DURATION.fullmatch(word):
        if field.root != "duration":
            raise QueryError(f"{token.text} is a duration; only 'duration' takes 90s/5m/2h "
                             f"(quote it to compare text)", col, expr)
        return Literal("number", _seconds(word), token.text, col)
    raise QueryError(f"unquoted value {token.text!r}: quote text ('{token.text}'), or write a number, "
                     "null, true or false", col, expr)


def _string(text: str, field: Field, col: int, expr: str) -> Literal:
    """A quoted value: a date/time for ``start``, a duration or number for ``duration``; an
    error for a metric (a number written in quotes is most likely a mistake)."""
    if field.root == "start":
        return _time(text, col, expr)
    if field.root == "duration":
        lowered = text.strip().lower()
        if DURATION.fullmatch(lowered):
            return Literal("number", _seconds(lowered), text, col)
        if NUMBER.fullmatch(lowered):
            return Literal("number", float(lowered), text, col)
        raise QueryError(f"duration takes seconds or 90s/5m/2h/1d, got {text!r}", col, expr)
    if field.kind == "metric":
        raise QueryError(f"{field.text} is a number; write the value without quotes", col, expr)
    return Literal("string", text, text, col)


def _time(text: str, col: int, expr: str) -> Literal:
    """An ISO date ('2026-12-03', compared by day) or time ('2026-12-03T14:00[:05][Z|+02:00]'; UTC if no zone)."""
    stripped = text.strip()
    try:
        if DATE_ONLY.fullmatch(stripped):
            return Literal("date", date.fromisoformat(stripped), text, col)
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise QueryError(f"start takes an ISO date or time ('2026-12-03' or '2026-12-03 14:00'), got {text!r}",
                         col, expr) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return Literal("time", moment, text, col)


def _seconds(word: str) -> float:
    match = DURATION.fullmatch(word)
    assert match is not None  # callers checked
    return float(match.group(1)) * SECONDS[match.group(2)]
