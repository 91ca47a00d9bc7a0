"""The ``--where`` language of ``codex-ml runs query``: a recursive-descent parser to an AST.

    expr       := or_expr
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | '(' expr ')' | predicate
    predicate  := FIELD op VALUE | FIELD ['not'] 'in' '(' VALUE (',' VALUE)* ')'
                | FIELD 'is' ['not'] 'null'
    op         := = | != | <> | < | <= | > | >= | ~ | !~

So ``not`` binds tighter than ``and``, which binds tighter than ``or``. Fields and literals are
described in docs/runs.md; codex_ml.runs.sql turns the AST into DuckDB SQL. No DuckDB here: a bad
expression is reported, with its column, before anything is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from codex_ml.runs.where_fields import Field, parse_field
from codex_ml.runs.where_literals import NUMBER, Literal, parse_literal
from codex_ml.runs.where_tokens import QueryError, Token, tokenize

__all__ = ["And", "Compare", "Expr", "Field", "InList", "IsNull", "Literal", "Not", "Or", "QueryError",
           "parse_where", "parse_sort", "COMPARISONS"]

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=", "~", "!~")
#: Parentheses and 'not's nested deeper than this are refused (Python's recursion limit is near).
MAX_DEPTH = 100
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``~``/``!~`` take a regular expression (a string)."""

    field: Field
    op: str
    value: Literal


@dataclass(frozen=True)
class InList:
    """``field in (v1, v2, ...)`` (``negated``: ``not in``)."""

    field: Field
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    """``field is null`` (``negated``: ``is not null``): the run has no such value."""

    field: Field
    negated: bool = False


@dataclass(frozen=True)
class Not:
    """``not expr``: every run the inner expression does not match."""

    inner: Expr


@dataclass(frozen=True)
class And:
    """``a and b and ...``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """``a or b or ...``."""

    items: tuple[Expr, ...]


Expr = Union[Compare, InList, IsNull, Not, And, Or]


def parse_where(expr: str) -> Expr:
    """Parse a ``--where`` expression; raises QueryError (one line, with the column) if it is bad."""
    if not expr.strip():
        raise QueryError("empty expression", 1, expr)
    parser = _Parser(expr, tokenize(expr))
    tree = parser.or_expr()
    parser.expect_end()
    return tree


def parse_sort(text: str) -> tuple[Field, bool]:
    """Parse a ``--sort`` key: a field, with a leading '-' for descending. Returns (field, descending)."""
    stripped = text.strip()
    descending = stripped.startswith("-")
    body = stripped[1:] if descending else stripped
    if not body:
        raise QueryError("expected a field to sort by", len(text) + 1, text, "--sort")
    tokens = tokenize(body, "--sort")
    offset = len(text) - len(text.lstrip()) + (1 if descending else 0)
    if tokens[0].kind != "word" or tokens[1].kind != "end":
        bad = tokens[0] if tokens[0].kind != "word" else tokens[1]
        raise QueryError("expected one field (e.g. metrics.val/loss.min or -params.training.lr)",
                         bad.column + offset, text, "--sort")
    try:
        return parse_field(tokens[0], body, "--sort"), descending
    except QueryError as exc:
        raise QueryError(exc.what, exc.column + offset, text, "--sort") from None


class _Parser:
    """One pass over the tokens; each method parses one rule of the grammar above."""

    def __init__(self, expr: str, tokens: list[Token]) -> None:
        self.expr = expr
        self.tokens = tokens
        self.pos = 0
        self.depth = 0  # of parentheses and 'not's

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def fail(self, what: str, token: Token | None = None) -> QueryError:
        """A QueryError pointing at ``token`` (default: the current one)."""
        token = token or self.tok
        if token.kind == "end":
            what = f"{what}, but the expression ended"
        return QueryError(what, token.column, self.expr)

    def take_keyword(self, word: str) -> bool:
        if self.tok.lower() == word:
            self.pos += 1
            return True
        return False

    def take_op(self, op: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == op:
            self.pos += 1
            return True
        return False

    def expect_end(self) -> None:
        if self.tok.kind == "end":
            return
        if self.tok.kind == "op" and self.tok.text == ")":
            raise self.fail("unbalanced ')' (no '(' before it)")
        raise self.fail(f"expected 'and', 'or' or the end, got {self.tok.text!r}")

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.take_keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.take_keyword("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expr:
        if self.depth > MAX_DEPTH:  # a RecursionError would be a traceback, not one error line
            raise self.fail(f"expression nested more than {MAX_DEPTH} deep")
        if self.take_keyword("not"):
            self.depth += 1
            inner = self.not_expr()
            self.depth -= 1
            return Not(inner)
        opening = self.tok
        if self.take_op("("):
            self.depth += 1
            inner = self.or_expr()
            self.depth -= 1
            if not self.take_op(")"):
                if self.tok.kind == "end":
                    raise QueryError("'(' is never closed", opening.column, self.expr)
                raise self.fail(f"expected ')' or 'and'/'or', got {self.tok.text!r}")
            return inner
        return self.predicate()

    def predicate(self) -> Expr:
        token = self.tok
        if token.kind == "string" or (token.kind == "word" and NUMBER.fullmatch(token.text)):
            raise self.fail(f"expected a field, got the value {token.text!r}: the field goes on the left "
                            f"(params.x > 5, not 5 < params.x)")
        if token.kind != "word" or token.lower() in KEYWORDS:
            raise self.fail("expected a field (name, status, start, duration, params.*, tags.*, metrics.*)"
                            + (f", got {token.text!r}" if token.text else ""))
        field = parse_field(token, self.expr)
        self.pos += 1
        if self.take_keyword("is"):
            negated = self.take_keyword("not")
            if not self.take_keyword("null"):
                raise self.fail(f"expected 'null' after 'is{' not' if negated else ''}'")
            return IsNull(field, negated)
        if self.tok.lower() in ("not", "in"):
            return self.in_list(field)
        op = self.tok
        if op.kind != "op" or op.text not in COMPARISONS:
            raise self.fail(f"expected an operator (= != < <= > >= ~ !~ in, is null) after {field.text}")
        self.pos += 1
        return self.comparison(field, op)

    def comparison(self, field: Field, op: Token) -> Expr:
        if op.text in ("~", "!~"):
            return Compare(field, op.text, self.regex(field))
        value = self.literal(field)
        if value.kind == "null" and op.text in ("=", "!="):
            # `x = null` reads as `x is null`: what the user means, where SQL would match nothing.
            return IsNull(field, negated=op.text == "!=")
        if value.kind == "null":
            raise QueryError(f"null only goes with =, != or 'is [not] null', not {op.text}", value.column, self.expr)
        if op.text not in ("=", "!=") and value.kind == "bool":
            raise QueryError(f"true/false only go with = and !=, not {op.text}", value.column, self.expr)
        return Compare(field, op.text, value)

    def in_list(self, field: Field) -> Expr:
        negated = self.take_keyword("not")
        if not self.take_keyword("in"):
            raise self.fail("expected 'in' after 'not' (field not in (...))")
        if not self.take_op("("):
            raise self.fail("expected '(' after 'in'")
        values = [self.literal(field)]
        while self.take_op(","):
            values.append(self.literal(field))
        if not self.take_op(")"):
            raise self.fail("expected ',' or ')' in the 'in (...)' list")
        for value in values:
            if value.kind == "null":
                raise QueryError("null cannot be in an 'in' list; use 'is null'", value.column, self.expr)
        return InList(field, tuple(values), negated)

    def literal(self, field: Field) -> Literal:
        token = self.tok
        if token.kind not in ("word", "string"):
            raise self.fail("expected a value (a number, a 'quoted string', null, true or false)")
        self.pos += 1
        return parse_literal(token, field, self.expr)

    def regex(self, field: Field) -> Literal:
        """The quoted pattern after ``~``/``!~``: text as written (for start too: ``start ~ '-12-'``)."""
        if field.numeric:
            raise QueryError(f"~ matches text; {field.text} is a number (use < > =)", field.column, self.expr)
        token = self.tok
        if token.kind != "string":
            raise self.fail("~ takes a 'quoted' regular expression")
        self.pos += 1
        try:
            re.compile(token.text)
        except re.error as exc:
            raise QueryError(f"bad regular expression ({exc.msg})", token.column, self.expr) from None
        return Literal("string", token.text, token.text, token.column)
