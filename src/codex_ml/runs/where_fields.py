"""Fields of the ``--where`` / ``--sort`` language: ``name``, ``params.training.lr``,
``metrics.val/loss.min``, ``metrics."key with space".max``, ``metrics.val/loss@500`` ...

A field is one word; its segments are split on the dots (and the ``@``) that are not inside
quotes, so a key holding a dot, a space or an ``@`` is written with that part quoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from codex_ml.runs.where_tokens import QueryError, Token

#: Columns of the runs table (run_id: the run's path under the root; sinks: a comma list, e.g. "mlflow,tensorboard").
RUN_FIELDS = ("name", "status", "start", "duration", "run_id", "path", "sinks")
#: The last segment of a metrics field names its aggregate when it is one of these.
AGGREGATES = ("last", "min", "max", "mean", "count")
FIELDS_HELP = ("name, status, start, duration, run_id, sinks, params.<key>, tags.<key>, "
               "metrics.<key>[.last|.min|.max|.mean|.count], metrics.<key>@<step>")


@dataclass(frozen=True)
class Field:
    """A parsed field. ``root``: one of RUN_FIELDS, params, tags or metrics; ``key``: the
    param/tag/metric key; ``agg``: the metric aggregate; ``step``: for ``metrics.<key>@<step>``
    (then ``agg`` is None); ``text``/``column``: as written, for messages."""

    root: str
    key: str | None = None
    agg: str | None = None
    step: int | None = None
    text: str = ""
    column: int = 0

    @property
    def kind(self) -> str:
        """'run' (a column of the runs table), 'param', 'tag' or 'metric'."""
        return {"params": "param", "tags": "tag", "metrics": "metric"}.get(self.root, "run")

    @property
    def numeric(self) -> bool:
        """Whether the field only holds numbers (metrics, duration)."""
        return self.root in ("metrics", "duration")


@dataclass
class _Segment:
    text: str
    quoted: bool  # any part of it was quoted (then it is never an aggregate or a root)
    column: int


def parse_field(token: Token, expr: str, option: str = "--where") -> Field:
    """The field written as ``token`` (a 'word' token); raises QueryError for an unknown
    root, an empty key segment, a bad ``@step``."""
    segments, step_part = _split(token)
    root = segments[0]
    name = root.text.lower()
    if root.quoted or name not in RUN_FIELDS + ("params", "tags", "metrics"):
        raise QueryError(f"unknown field {token.text!r}{_guess(token.text)} (fields: {FIELDS_HELP})",
                         token.column, expr, option)
    for seg in segments[1:]:
        if not seg.text:
            raise QueryError(f"empty key segment in {token.text!r} (quote keys holding dots: "
                             f"{name}.\"a.b\")", seg.column, expr, option)
    if step_part is not None and name != "metrics":
        raise QueryError(f"'@<step>' only goes with metrics.<key>, not {name}", step_part.column - 1, expr, option)
    if name in RUN_FIELDS:
        if len(segments) > 1:
            raise QueryError(f"{name} has no sub-fields", segments[1].column - 1, expr, option)
        return Field(name, text=token.text, column=token.column)
    if len(segments) < 2:
        raise QueryError(f"{name} needs a key, e.g. {_example(name)}", token.column + len(root.text), expr, option)
    if name != "metrics":
        return Field(name, _join(segments[1:]), text=token.text, column=token.column)
    return _metric(segments, step_part, token, expr, option)


def _metric(segments: list[_Segment], step_part: _Segment | None, token: Token, expr: str, option: str) -> Field:
    """metrics.<key>[.agg] or metrics.<key>@<step>."""
    if step_part is not None:
        if not step_part.text.isdigit() or step_part.quoted:
            raise QueryError(f"'@' takes a step number (metrics.<key>@500), got {step_part.text!r}",
                             step_part.column, expr, option)
        return Field("metrics", _join(segments[1:]), None, int(step_part.text), token.text, token.column)
    last = segments[-1]
    if len(segments) > 2 and not last.quoted and last.text in AGGREGATES:
        return Field("metrics", _join(segments[1:-1]), last.text, text=token.text, column=token.column)
    return Field("metrics", _join(segments[1:]), "last", text=token.text, column=token.column)


def _split(token: Token) -> tuple[list[_Segment], _Segment | None]:
    """Segments split on unquoted dots; the part after the last unquoted '@' (or None)."""
    chars = [(ch, piece.quoted, piece.column + (1 if piece.quoted else 0) + i)
             for piece in token.pieces for i, ch in enumerate(piece.text)]
    step: _Segment | None = None
    at = max((i for i, (ch, quoted, _) in enumerate(chars) if ch == "@" and not quoted), default=None)
    if at is not None:
        tail = chars[at + 1:]
        step = _Segment("".join(c for c, _, _ in tail), any(q for _, q, _ in tail),
                        tail[0][2] if tail else chars[at][2] + 1)
        chars = chars[:at]
    segments = [_Segment("", False, token.column)]
    for ch, quoted, column in chars:
        if ch == "." and not quoted:
            segments.append(_Segment("", False, column + 1))
            continue
        seg = segments[-1]
        if not seg.text and not seg.quoted:
            seg.column = column
        seg.text += ch
        seg.quoted = seg.quoted or quoted
    return segments, step


def _guess(text: str) -> str:
    """A hint for a key written without its prefix (``lr``, ``val/loss``, ``training.lr``)."""
    if not text or not (text[0].isalnum() or text[0] == "_") or any(q in text for q in "'\"@"):
        return ""
    order = ("metrics", "params", "tags") if "/" in text else ("params", "tags", "metrics")
    return ": did you mean " + ", ".join(f"{p}.{text}" for p in order[:2]) + f" or {order[2]}.{text}?"


def _join(segments: list[_Segment]) -> str:
    return ".".join(seg.text for seg in segments)


def _example(root: str) -> str:
    return {"params": "params.training.lr", "tags": "tags.stage", "metrics": "metrics.val/loss.min"}[root]
