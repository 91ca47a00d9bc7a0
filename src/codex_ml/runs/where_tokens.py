"""The tokenizer of the ``--where`` language (codex_ml.runs.grammar parses the tokens).

Pure Python on purpose: a bad expression is reported (with its column) before DuckDB is
imported. Columns are 1-based character positions in the expression, as an editor shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from codex_ml.errors import CodexMLError

#: Characters that end a bare word: whitespace, the operators, parentheses, commas, quotes.
OPERATOR_CHARS = frozenset("=!<>~(),")
QUOTES = frozenset("'\"")
#: Two-character operators first, so `<=` is not read as `<` then `=`.
OPERATORS = ("<=", ">=", "!=", "<>", "!~", "=", "<", ">", "~", "(", ")", ",")


class QueryError(CodexMLError, ValueError):
    """A ``--where`` (or ``--sort``) expression that cannot be parsed or run.

    The message is one line, ``--where: <what went wrong> at column N: <expression>``, so
    the CLI's single ``error:`` line shows where the problem is.
    """

    def __init__(self, what: str, column: int, expression: str, option: str = "--where") -> None:
        # A newline inside the expression would break the one-line error: show it as a space.
        flat = " ".join(expression.splitlines()) if "\n" in expression or "\r" in expression else expression
        super().__init__(f"{option}: {what} at column {column}: {flat}")
        self.what = what
        self.column = column
        self.expression = expression


@dataclass(frozen=True)
class Piece:
    """A run of characters inside a word; ``quoted`` pieces came from '...' or "..." (no escapes left)."""

    text: str
    quoted: bool
    column: int  # column of its first character (of the opening quote when quoted)


@dataclass(frozen=True)
class Token:
    """One token. ``kind``: 'op' (text is the operator), 'word' (bare, possibly with quoted
    pieces glued on: a field or a bare literal), 'string' (a quoted literal), 'end'."""

    kind: str
    text: str
    column: int
    pieces: tuple[Piece, ...] = ()

    def lower(self) -> str:
        """The word lower-cased, for keywords (and, or, not, in, is, null, true, false)."""
        return self.text.lower() if self.kind == "word" and all(not p.quoted for p in self.pieces) else ""


def tokenize(expr: str, option: str = "--where") -> list[Token]:
    """Split ``expr`` into tokens, ending with an 'end' token; raises QueryError on an
    unterminated string or a stray character."""
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch.isspace():
            i += 1
        elif ch in QUOTES:
            text, end = _quoted(expr, i, option)
            tokens.append(Token("string", text, i + 1))
            i = end
        elif ch in OPERATOR_CHARS:
            op = next((o for o in OPERATORS if expr.startswith(o, i)), None)
            if op is None:  # only '!' alone gets here
                raise QueryError(f"unexpected {ch!r} (did you mean '!=' or '!~'?)", i + 1, expr, option)
            tokens.append(Token("op", "!=" if op == "<>" else op, i + 1))
            i += len(op)
        else:
            token, i = _word(expr, i, option)
            tokens.append(token)
    tokens.append(Token("end", "", len(expr) + 1))
    return tokens


def _quoted(expr: str, start: int, option: str) -> tuple[str, int]:
    """Read a quoted string at ``start``; a doubled quote inside stands for one quote
    ('it''s'), and a backslash escapes the next character ('it\\'s')."""
    quote = expr[start]
    out: list[str] = []
    i = start + 1
    while i < len(expr):
        ch = expr[i]
        if ch == "\\" and i + 1 < len(expr):
            out.append(expr[i + 1])
            i += 2
        elif ch == quote and expr.startswith(quote * 2, i):
            out.append(quote)
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise QueryError(f"unterminated string (no closing {quote})", start + 1, expr, option)


def _word(expr: str, start: int, option: str) -> tuple[Token, int]:
    """A bare word, with quoted pieces glued on without spaces (metrics."a b".max)."""
    pieces: list[Piece] = []
    i = start
    while i < len(expr) and not expr[i].isspace() and expr[i] not in OPERATOR_CHARS:
        if expr[i] in QUOTES:
            text, end = _quoted(expr, i, option)
            pieces.append(Piece(text, True, i + 1))
            i = end
            continue
        j = i
        while j < len(expr) and not expr[j].isspace() and expr[j] not in OPERATOR_CHARS and expr[j] not in QUOTES:
            j += 1
        pieces.append(Piece(expr[i:j], False, i + 1))
        i = j
    return Token("word", expr[start:i], start + 1, tuple(pieces)), i
