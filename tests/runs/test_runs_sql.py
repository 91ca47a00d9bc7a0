"""codex_ml.runs.sql against a small hand-made DuckDB holding the index's tables (the schema of
codex_ml.runs.index): what each expression selects, down to missing values, NaN and value-at-step.
The same queries over real runs are in test_runs_query.py."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

duckdb = pytest.importorskip("duckdb")

from codex_ml.runs.grammar import parse_sort, parse_where  # noqa: E402
from codex_ml.runs.sql import compile_query  # noqa: E402

NAN = math.nan
# run_id, name, status, start, duration (s), sinks
RUNS = [
    ("a", "pretrain-a", "FINISHED", datetime(2026, 12, 1, 10, 0), 100.0, ""),
    ("b", "pretrain-b", "FINISHED", datetime(2026, 12, 2, 9, 30), 400.0, "mlflow,tensorboard"),
    ("c", "sft-c", "FAILED", datetime(2026, 12, 3, 23, 59), 7200.0, ""),
    ("d", "it's d", "RUNNING", None, None, ""),
]
# run_id, key, value, num  (d has no params at all; c's lr is text, not a number)
PARAMS = [
    ("a", "training.lr", "0.0005", 5e-4), ("a", "model.n_layer", "2", 2.0), ("a", "amp", "true", None),
    ("b", "training.lr", "0.003", 3e-3), ("b", "model.n_layer", "4", 4.0), ("b", "amp", "false", None),
    ("c", "training.lr", "auto", None), ("c", "model.n_layer", "4", 4.0),
]
TAGS = [("a", "stage", "pretrain"), ("b", "stage", "pretrain"), ("c", "stage", "sft"), ("c", "seed", "7")]
# run_id, key, last, min, max, mean, count, last_step
STATS = [
    ("a", "val/loss", 1.9, 1.7, 3.0, 2.2, 10, 900),
    ("b", "val/loss", 2.5, 2.4, 3.1, 2.7, 10, 900),
    ("c", "val/loss", NAN, 2.0, 2.9, 2.5, 5, 400),   # diverged: last is NaN
    ("a", "a b", 1.0, 1.0, 1.0, 1.0, 1, 0),
]
# points for value-at-step: a logs val/loss at 0, 100, 200; b at 0 and 500
POINTS = [("a", "val/loss", 0, 3.0), ("a", "val/loss", 100, 2.0), ("a", "val/loss", 200, 1.7),
          ("b", "val/loss", 0, 3.1), ("b", "val/loss", 500, 2.4)]


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("CREATE TABLE runs(run_id VARCHAR, name VARCHAR, status VARCHAR, start TIMESTAMP, duration DOUBLE, "
                "path VARCHAR, sinks VARCHAR)")
    con.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, '', ?)", RUNS)
    con.execute("CREATE TABLE params(run_id VARCHAR, key VARCHAR, value VARCHAR, num DOUBLE)")
    con.executemany("INSERT INTO params VALUES (?, ?, ?, ?)", PARAMS)
    con.execute("CREATE TABLE tags(run_id VARCHAR, key VARCHAR, value VARCHAR)")
    con.executemany("INSERT INTO tags VALUES (?, ?, ?)", TAGS)
    con.execute("CREATE TABLE metric_stats(run_id VARCHAR, key VARCHAR, last DOUBLE, min DOUBLE, max DOUBLE, "
                "mean DOUBLE, count BIGINT, last_step BIGINT)")
    con.executemany("INSERT INTO metric_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?)", STATS)
    con.execute("CREATE TABLE points(run_id VARCHAR, key VARCHAR, step BIGINT, value DOUBLE)")
    con.executemany("INSERT INTO points VALUES (?, ?, ?, ?)", POINTS)
    yield con
    con.close()


def select(con, where: str | None, sort: str | None = None, limit: int | None = None) -> list[str]:
    query = compile_query(parse_where(where) if where else None, parse_sort(sort) if sort else None, limit)
    return [row[0] for row in con.execute(query.sql, query.params).fetchall()]


CASES = [
    (None, "abcd"),
    # the question: lr < 1e-3 and val loss below 1.8 at any point, or the SFT stage
    ("params.training.lr < 1e-3 and metrics.val/loss.min < 1.8 or tags.stage = 'sft'", "ac"),
    ("params.training.lr < 1e-3 and (metrics.val/loss.min < 1.8 or tags.stage = 'sft')", "a"),
    # params: numeric when the literal is a number (0.0005 < 0.003, not text order), text otherwise
    ("params.training.lr > 0.001", "b"),
    ("params.training.lr = 5e-4", "a"),
    ("params.training.lr = '0.0005'", "a"),
    ("params.training.lr = 'auto'", "c"),
    ("params.model.n_layer in (4, 8)", "bc"),
    ("params.amp = true", "a"),
    ("params.amp = false", "b"),
    # missing values: a comparison with a field the run lacks is false; `not` is the complement
    ("params.model.n_layer = 4", "bc"),
    ("not params.model.n_layer = 4", "ad"),
    ("params.model.n_layer != 4", "a"),
    ("params.model.n_layer != 4 or params.model.n_layer is null", "ad"),
    ("params.model.n_layer not in (4)", "a"),
    ("not params.model.n_layer in (4)", "ad"),
    ("params.training.lr != 1", "ab"),          # c's lr is not a number: no numeric comparison holds
    ("params.training.lr is null", "d"),
    ("params.training.lr is not null", "abc"),
    ("not (params.training.lr < 1 or params.training.lr >= 1)", "cd"),
    ("tags.stage !~ 'pre'", "c"),
    ("not tags.stage ~ 'pre'", "cd"),
    # tags: numbers compared as numbers
    ("tags.seed = 7", "c"), ("tags.seed > 6.5", "c"), ("tags.seed = '7'", "c"),
    # regex: a search anywhere in the text; anchors for more
    ("name ~ 'pre'", "ab"), ("name ~ '^sft-'", "c"), ("name ~ 'b$' or name ~ '^s'", "bc"),
    # status: case does not matter for = and in
    ("status = 'finished'", "ab"), ("status in ('failed', 'RUNNING')", "cd"), ("status != 'FINISHED'", "cd"),
    # aggregates and NaN: NaN satisfies no comparison but !=
    ("metrics.val/loss.max >= 3", "ab"), ("metrics.val/loss.max > 3", "b"), ("metrics.val/loss.mean < 2.5", "a"), ("metrics.val/loss.count < 10", "c"),
    ("metrics.val/loss < 100", "ab"), ("metrics.val/loss > -100", "ab"), ("metrics.val/loss != 1.9", "bc"),
    ("metrics.val/loss is null", "d"), ("metrics.train/loss is null", "abcd"),
    ('metrics."a b".max = 1', "a"),
    # value at a step: the last point at or before it
    ("metrics.val/loss@150 < 2.5", "a"), ("metrics.val/loss@150 = 2", "a"), ("metrics.val/loss@499 = 3.1", "b"),
    ("metrics.val/loss@500 = 2.4", "b"), ("metrics.val/loss@1000 < 2", "a"), ("metrics.val/loss@0 >= 3", "ab"),
    ("metrics.val/loss@150 is null", "cd"),
    ("metrics.val/loss@100 = 2 and metrics.val/loss@0 = 3 and not metrics.val/loss@99 != 3", "a"),
    # start (UTC) by day or by time, duration in seconds
    ("start >= '2026-12-02'", "bc"), ("start = '2026-12-03'", "c"), ("start < '2026-12-02 10:00'", "ab"),
    ("start < '2026-12-02T10:00+02:00'", "a"), ("start is null", "d"), ("start ~ '-12-0[12] '", "ab"),
    ("run_id in ('a', 'c')", "ac"), ("sinks ~ 'mlflow'", "b"), ("sinks = ''", "acd"),
    ("duration > 5m", "bc"), ("duration <= 100", "a"), ("duration >= 2h", "c"),
    # user text never reaches the SQL: quotes and SQL in a value are just characters
    ("name = 'it''s d'", "d"), ("name = 'x'' OR 1=1 --'", ""), ("params.\"x') OR TRUE --\" is null", "abcd"),
]


@pytest.mark.parametrize(("where", "expected"), CASES)
def test_selects(con, where: str | None, expected: str) -> None:
    assert "".join(sorted(select(con, where))) == expected


@pytest.mark.parametrize(("sort", "expected"), [
    ("metrics.val/loss.min", "acbd"),
    ("-metrics.val/loss.min", "bcad"),             # missing last, descending too
    ("metrics.val/loss", "abcd"),                  # NaN (c) after the numbers, before missing (d)
    ("-metrics.val/loss", "bacd"),
    ("params.training.lr", "abcd"),                # numbers, then text ('auto'), then missing
    ("-params.model.n_layer", "bcad"),             # ties broken by run id
    ("-start", "cbad"), ("duration", "abcd"), ("name", "dabc"),
])
def test_sort_puts_missing_last(con, sort: str, expected: str) -> None:
    assert "".join(select(con, None, sort)) == expected


def test_limit_and_sort_with_filter(con) -> None:
    assert select(con, "status = 'FINISHED' or status = 'FAILED'", "metrics.val/loss.min", 2) == ["a", "c"]
    assert select(con, "not name = 'pretrain-a'", None, 2) == ["b", "c"]  # no --sort: run-id order, as runs list


def test_parameterised_and_points_only_when_needed() -> None:
    query = compile_query(parse_where("name = 'x' and params.p.q > 2 and metrics.l.max < 1"))
    assert "'x'" not in query.sql and "p.q" not in query.sql and "'l'" not in query.sql
    assert query.params == ["p.q", "l", "x", 2.0, 1.0]
    assert not query.needs_points
    assert compile_query(parse_where("metrics.l@5 < 1")).needs_points
    # one join per key, however often it is named
    query = compile_query(parse_where("metrics.l.max < 1 or metrics.l.min > 0 or metrics.l < 3"), parse_sort("metrics.l"))
    assert query.sql.count("LEFT JOIN") == 1


def test_values_at_steps_read_the_points_once() -> None:
    query = compile_query(parse_where("metrics.a@5 < 1 or metrics.b@7 > 2 or metrics.a@5 > 9"), parse_sort("metrics.a@9"))
    assert query.sql.count("FROM points") == 1
    assert query.params == ["a", 5, "b", 7, "a", 9, "a", "b", 9, 1.0, 2.0, 9.0]


# -- the SQL against a plain-Python reading of the same rules, on random expressions ----------------

ATOMS = [
    "params.training.lr < 1e-3", "params.training.lr = 'auto'", "params.model.n_layer = 4", "params.model.n_layer != 4",
    "params.model.n_layer in (2, 8)", "params.model.n_layer not in (2)", "params.amp = true", "params.x is null",
    "tags.stage = 'sft'", "tags.stage !~ '^pre'", "tags.seed > 5", "name ~ 'b|c'", "status = 'finished'",
    "metrics.val/loss < 2", "metrics.val/loss != 2.5", "metrics.val/loss.min <= 2", "metrics.val/loss.count >= 10",
    "metrics.val/loss@150 < 2.5", "metrics.val/loss@150 is not null", "start >= '2026-12-02'", "duration > 5m",
]


def reference(node, run: str) -> bool:
    """What the docs say an expression means, computed in Python over the fixture's rows."""
    from codex_ml.runs.grammar import And, Compare, InList, IsNull, Not, Or

    if isinstance(node, (And, Or)):
        results = [reference(item, run) for item in node.items]
        return all(results) if isinstance(node, And) else any(results)
    if isinstance(node, Not):
        return not reference(node.inner, run)
    if isinstance(node, IsNull):
        return (lookup(node.field, run, None) is None) != node.negated
    if isinstance(node, InList):
        tests = [holds(node.field, "!=" if node.negated else "=", v, run) for v in node.values]
        return all(tests) if node.negated else any(tests)
    assert isinstance(node, Compare)
    return holds(node.field, node.op, node.value, run)


def lookup(field, run: str, literal):
    row = {r[0]: r for r in RUNS}[run]
    if field.kind == "run":
        value = dict(zip(("run_id", "name", "status", "start", "duration"), row))[field.root]
        by_day = field.root == "start" and value is not None and literal is not None and literal.kind == "date"
        return value.date() if by_day else value
    if field.kind == "metric":
        if field.step is not None:
            points = [(s, v) for r, k, s, v in POINTS if r == run and k == field.key and s <= field.step]
            return max(points)[1] if points else None
        stats = {(r, k): dict(zip(("last", "min", "max", "mean", "count"), rest[:5])) for r, k, *rest in STATS}
        return stats.get((run, field.key), {}).get(field.agg)
    table = PARAMS if field.kind == "param" else [(r, k, v, _num(v)) for r, k, v in TAGS]
    found = [(v, n) for r, k, v, n in table if r == run and k == field.key]
    if not found or literal is None:
        return found[0][0] if found else None
    value, num = found[0]
    return num if literal.kind == "number" else (value.lower() if literal.kind == "bool" else value)


def _num(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def holds(field, op: str, literal, run: str) -> bool:
    import operator
    import re

    value = lookup(field, run, literal)
    if value is None:
        return False
    want = literal.value
    if literal.kind == "bool":
        want = "true" if want else "false"
    if field.root == "status":
        value, want = value.upper(), want.upper()
    if op in ("~", "!~"):
        return bool(re.search(want, value)) == (op == "~")
    ops = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
    return ops[op](value, want)  # Python floats compare as IEEE says: NaN only !=


def random_expression(rng, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(ATOMS)
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return f"not ({random_expression(rng, depth - 1)})"
    return f"({random_expression(rng, depth - 1)}) {kind} ({random_expression(rng, depth - 1)})"


def test_sql_agrees_with_the_documented_meaning(con) -> None:
    import random

    rng = random.Random(16)
    for _ in range(300):
        where = random_expression(rng, 3)
        expected = [run for run, *_ in RUNS if reference(parse_where(where), run)]
        assert sorted(select(con, where)) == expected, where
