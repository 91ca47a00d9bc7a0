"""The ``--where`` / ``--sort`` language (codex_ml.runs.grammar): what each expression parses to,
and where each bad one is reported (the column a user sees in the one-line error)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from codex_ml.errors import CodexMLError
from codex_ml.runs.grammar import (And, Compare, Field, InList, IsNull, Not, Or, QueryError, parse_sort,
                                   parse_where)


def sexp(node: object) -> str:
    """A short, readable form of a tree: (or (and (< params:training.lr 0.001) ...) ...)."""
    if isinstance(node, (And, Or)):
        return f"({type(node).__name__.lower()} " + " ".join(sexp(i) for i in node.items) + ")"
    if isinstance(node, Not):
        return f"(not {sexp(node.inner)})"
    if isinstance(node, IsNull):
        return f"({'notnull' if node.negated else 'null'} {fld(node.field)})"
    if isinstance(node, InList):
        values = " ".join(lit(v) for v in node.values)
        return f"({'notin' if node.negated else 'in'} {fld(node.field)} {values})"
    assert isinstance(node, Compare)
    return f"({node.op} {fld(node.field)} {lit(node.value)})"


def fld(field: Field) -> str:
    if field.kind == "run":
        return field.root
    if field.step is not None:
        return f"metric:{field.key}@{field.step}"
    suffix = f"[{field.agg}]" if field.kind == "metric" else ""
    return f"{field.kind}:{field.key}{suffix}"


def lit(value: object) -> str:
    kind, v = value.kind, value.value  # type: ignore[attr-defined]
    if kind == "number":
        return repr(v)
    if kind == "string":
        return repr(v)
    if kind in ("date", "time"):
        return f"{kind}:{v.isoformat()}"
    return f"{kind}:{v}"


PARSES = [
    # precedence: not > and > or
    ("name = 'a' or name = 'b' and status = 'FINISHED'",
     "(or (= name 'a') (and (= name 'b') (= status 'FINISHED')))"),
    ("name = 'a' and name = 'b' or status = 'FINISHED'",
     "(or (and (= name 'a') (= name 'b')) (= status 'FINISHED'))"),
    ("not name = 'a' and status = 'FAILED'", "(and (not (= name 'a')) (= status 'FAILED'))"),
    ("not (name = 'a' and status = 'FAILED')", "(not (and (= name 'a') (= status 'FAILED')))"),
    ("not not name = 'a'", "(not (not (= name 'a')))"),
    ("(name = 'a' or name = 'b') and status = 'FINISHED'",
     "(and (or (= name 'a') (= name 'b')) (= status 'FINISHED'))"),
    ("((name = 'a'))", "(= name 'a')"),
    ("(" * 100 + "name = 'a'" + ")" * 100, "(= name 'a')"),
    ("name='a'OR name='b'", "(or (= name 'a') (= name 'b'))"),  # keywords: any case
    ("name = 'a' AND NOT status = 'x'", "(and (= name 'a') (not (= status 'x')))"),
    # the question
    ("params.training.lr < 1e-3 and metrics.val/loss.min < 1.8 or tags.stage = 'sft'",
     "(or (and (< param:training.lr 0.001) (< metric:val/loss[min] 1.8)) (= tag:stage 'sft'))"),
    # operators, without spaces too
    ("params.x>=2", "(>= param:x 2.0)"),
    ("params.x<=-2.5", "(<= param:x -2.5)"),
    ("params.x != 1", "(!= param:x 1.0)"),
    ("params.x <> 1", "(!= param:x 1.0)"),
    ("params.x > .5", "(> param:x 0.5)"),
    ("params.x = +3E2", "(= param:x 300.0)"),
    # regex
    ("name ~ '^sft-'", "(~ name '^sft-')"),
    ("name !~ \"lr=1e-3\"", "(!~ name 'lr=1e-3')"),
    ("tags.stage~'s(ft|ft2)'", "(~ tag:stage 's(ft|ft2)')"),
    ("start ~ '-12-0[1-3] '", "(~ start '-12-0[1-3] ')"),
    # in / not in
    ("status in ('FINISHED', 'RUNNING')", "(in status 'FINISHED' 'RUNNING')"),
    ("params.model.n_layer in (2, 4,8)", "(in param:model.n_layer 2.0 4.0 8.0)"),
    ("params.model.n_layer not in (2)", "(notin param:model.n_layer 2.0)"),
    # nulls
    ("params.x is null", "(null param:x)"),
    ("params.x IS NOT NULL", "(notnull param:x)"),
    ("params.x = null", "(null param:x)"),
    ("params.x != null", "(notnull param:x)"),
    ("metrics.val/loss is null", "(null metric:val/loss[last])"),
    # aggregates: the last segment, when it names one; bare key is .last
    ("metrics.val/loss.max > 3", "(> metric:val/loss[max] 3.0)"),
    ("metrics.val/loss.mean > 3", "(> metric:val/loss[mean] 3.0)"),
    ("metrics.val/loss.count >= 10", "(>= metric:val/loss[count] 10.0)"),
    ("metrics.val/loss.last < 2", "(< metric:val/loss[last] 2.0)"),
    ("metrics.val/loss < 2", "(< metric:val/loss[last] 2.0)"),
    ("metrics.train.loss.min < 2", "(< metric:train.loss[min] 2.0)"),
    ("metrics.train.loss < 2", "(< metric:train.loss[last] 2.0)"),
    ("metrics.min < 2", "(< metric:min[last] 2.0)"),  # a metric named 'min'
    # quoting odd keys
    ('metrics."key with space".max > 1', "(> metric:key with space[max] 1.0)"),
    ("metrics.'loss.max' > 1", "(> metric:loss.max[last] 1.0)"),  # quoted: part of the key, not the aggregate
    ("metrics.'a@b'@7 > 1", "(> metric:a@b@7 1.0)"),
    ("params.'a.b'.c = 1", "(= param:a.b.c 1.0)"),
    ('params."odd key=1" = \'x\'', "(= param:odd key=1 'x')"),
    ("tags.'it''s' = 'yes'", "(= tag:it's 'yes')"),
    ("name = 'it\\'s'", "(= name \"it's\")"),
    # value at a step
    ("metrics.val/loss@500 < 2", "(< metric:val/loss@500 2.0)"),
    ("metrics.val/loss.min@500 < 2", "(< metric:val/loss.min@500 2.0)"),  # with @, the whole key
    # literals
    ("params.amp = true", "(= param:amp bool:True)"),
    ("params.amp != FALSE", "(!= param:amp bool:False)"),
    ("params.name = 'gpt'", "(= param:name 'gpt')"),
    ("name = 7", "(= name 7.0)"),
    ("run_id ~ '^sweeps/lr/'", "(~ run_id '^sweeps/lr/')"),
    ("sinks ~ 'mlflow'", "(~ sinks 'mlflow')"),
    # start and duration
    ("start >= '2026-12-03'", "(>= start date:2026-12-03)"),
    ("start < '2026-12-03 14:05'", "(< start time:2026-12-03T14:05:00)"),
    ("start < '2026-12-03T14:05:00+02:00'", "(< start time:2026-12-03T12:05:00)"),
    ("start < '2026-12-03T14:05Z'", "(< start time:2026-12-03T14:05:00)"),
    ("duration > 90", "(> duration 90.0)"),
    ("duration > 90s", "(> duration 90.0)"),
    ("duration < 5m", "(< duration 300.0)"),
    ("duration < 1.5h", "(< duration 5400.0)"),
    ("duration < '2h'", "(< duration 7200.0)"),
    ("duration < 1d", "(< duration 86400.0)"),
]


@pytest.mark.parametrize(("expr", "expected"), PARSES)
def test_parses(expr: str, expected: str) -> None:
    assert sexp(parse_where(expr)) == expected


def test_literal_values_are_typed() -> None:
    tree = parse_where("start > '2026-12-03' or start > '2026-12-03 01:02:03'")
    assert isinstance(tree, Or)
    assert tree.items[0].value.value == date(2026, 12, 3)
    assert tree.items[1].value.value == datetime(2026, 12, 3, 1, 2, 3)


# (expression, column of the problem, words the message must hold)
ERRORS = [
    ("", 1, "empty expression"),
    ("   ", 1, "empty expression"),
    ("lr < 1e-3", 1, "unknown field 'lr': did you mean params.lr"),
    ("params.lr < 1e-3 and loss < 2", 22, "unknown field 'loss'"),
    ("params.lr < ", 13, "expected a value"),
    ("params.lr 1e-3", 11, "expected an operator"),
    ("params.lr == 1", 12, "expected a value"),
    ("params.lr = 1 and", 18, "expected a field"),
    ("params.lr = 1 or or name = 'a'", 18, "expected a field"),
    ("params.lr = 1 name = 'a'", 15, "expected 'and', 'or' or the end"),
    ("(params.lr = 1", 1, "'(' is never closed"),
    ("((params.lr = 1) or (name = 'a')", 1, "'(' is never closed"),
    ("params.lr = 1)", 14, "unbalanced ')'"),
    ("()", 2, "expected a field"),
    ("name = 'abc", 8, "unterminated string"),
    ("name = \"abc'", 8, "unterminated string"),
    ("name = abc", 8, "unquoted value 'abc'"),
    ("status = FINISHED", 10, "quote text ('FINISHED')"),
    ("name ! 'a'", 6, "unexpected '!'"),
    ("name ~ '(unclosed'", 8, "bad regular expression"),
    ("name ~ 3", 8, "'quoted' regular expression"),
    ("name ~ ", 8, "'quoted' regular expression, but the expression ended"),
    ("metrics.loss ~ '1'", 1, "is a number"),
    ("metrics.loss = 'a'", 16, "is a number; write the value without quotes"),
    ("metrics.loss = true", 16, "is not true/false"),
    ("params.x < true", 12, "true/false only go with = and !="),
    ("params.x < null", 12, "null only goes with"),
    ("params.x in (1, null)", 17, "null cannot be in"),
    ("params.x in 1", 13, "expected '('"),
    ("params.x in (1 2)", 16, "expected ',' or ')'"),
    ("params.x not 1", 14, "expected 'in' after 'not'"),
    ("params.x is 1", 13, "expected 'null' after 'is'"),
    ("params.x is not 1", 17, "expected 'null' after 'is not'"),
    ("params = 1", 7, "params needs a key"),
    ("metrics < 1", 8, "metrics needs a key"),
    ("params. = 1", 8, "empty key segment"),
    ("params.a..b = 1", 10, "empty key segment"),
    ("name.first = 'a'", 5, "name has no sub-fields"),
    ("params.x@3 = 1", 9, "'@<step>' only goes with metrics"),
    ("metrics.loss@ = 1", 14, "'@' takes a step number"),
    ("metrics.loss@-1 < 2", 14, "'@' takes a step number"),
    ("metrics.loss@1.5 < 2", 14, "'@' takes a step number"),
    ("start > 2026", 9, "start takes a 'quoted' ISO date"),
    ("start > '03/12/2026'", 9, "start takes an ISO date"),
    ("duration > 'long'", 12, "duration takes seconds"),
    ("duration > 5q", 12, "unquoted value '5q'"),
    ("params.x = 5m", 12, "only 'duration' takes 90s/5m/2h"),
    ("'name' = 'a'", 1, "expected a field, got the value 'name'"),
    ("5 < params.x", 1, "the field goes on the left"),
    ("val/loss < 2", 1, "did you mean metrics.val/loss, params.val/loss or tags.val/loss?"),
    ("training.lr < 2", 1, "did you mean params.training.lr, tags.training.lr"),
    ("not", 4, "but the expression ended"),
    ("and name = 'a'", 1, "expected a field"),
    ("foo.bar = 1", 1, "unknown field 'foo.bar'"),
    ("'x'y = 1", 1, "expected a field"),
    ("name = 'a'\nor bad = 1", 15, "unknown field 'bad'"),
    ("(" * 101 + "name = 'a'" + ")" * 101, 102, "nested more than 100 deep"),
    ("not " * 101 + "name = 'a'", 405, "nested more than 100 deep"),
]


@pytest.mark.parametrize(("expr", "column", "words"), ERRORS)
def test_bad_input_names_the_column(expr: str, column: int, words: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_where(expr)
    error = caught.value
    assert isinstance(error, CodexMLError)
    assert (error.column, words in error.what) == (column, True), str(error)
    message = str(error)
    assert message.startswith("--where: ") and f" at column {column}: " in message
    assert "\n" not in message  # one `error:` line on the command line


SORTS = [
    ("metrics.val/loss.min", "metric:val/loss[min]", False),
    ("-metrics.val/loss.min", "metric:val/loss[min]", True),
    (" -params.training.lr ", "param:training.lr", True),
    ("start", "start", False),
    ("metrics.val/loss@100", "metric:val/loss@100", False),
]


@pytest.mark.parametrize(("text", "field", "descending"), SORTS)
def test_sort_keys(text: str, field: str, descending: bool) -> None:
    parsed, desc = parse_sort(text)
    assert (fld(parsed), desc) == (field, descending)


@pytest.mark.parametrize(("text", "column", "words"), [
    ("-", 2, "expected a field"),
    ("loss", 1, "unknown field 'loss'"),
    ("-loss", 2, "unknown field 'loss'"),
    ("metrics.a metrics.b", 11, "expected one field"),
    ("-metrics.loss@x", 15, "'@' takes a step number"),
])
def test_bad_sort_keys(text: str, column: int, words: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_sort(text)
    assert str(caught.value).startswith("--sort: ")
    assert (caught.value.column, words in caught.value.what) == (column, True), str(caught.value)


def test_any_input_is_a_tree_or_one_error_line() -> None:
    """Random strings of the language's pieces: a tree (that compiles to SQL) or a QueryError whose
    column lies inside the text (or just past its end) -- never another exception."""
    import random

    from codex_ml.runs.sql import compile_query

    pieces = ["name", "status", "start", "duration", "params.x", "tags.'a b'", "metrics.l", "metrics.l.max",
              "metrics.l@3", "and", "or", "not", "in", "is", "null", "true", "(", ")", ",", "=", "!=", "<", "<=",
              ">=", "~", "!~", "'a'", '"b', "1e-3", "5m", "'2026-12-03'", "@", ".", "'", "\\", "!", "-", " ", "\n", "é"]
    rng = random.Random(16)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(0, 12)))
        for parse in (parse_where, parse_sort):
            try:
                tree = parse(text)
            except QueryError as error:
                assert "\n" not in str(error) and 1 <= error.column <= len(text) + 1, (text, str(error))
            else:
                if parse is parse_where:
                    compile_query(tree)
