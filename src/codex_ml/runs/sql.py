"""A parsed ``--where`` expression (codex_ml.runs.grammar) as one DuckDB query over the runs
index's tables: runs, params, tags, metric_stats, and points (only for ``metrics.<key>@<step>``).

Every value the user wrote goes in as a ``?`` parameter; the SQL text holds only names this
module chose (aliases, and the aggregate columns from a fixed list).

Missing values (docs/runs.md, "Missing values"): a comparison with a field the run does not
have is false, never SQL's unknown, so ``not`` is the plain complement: ``not params.x = 1``
matches the runs without ``params.x`` too, while ``params.x != 1`` (and ``not in``, ``!~``)
matches only runs that have ``params.x``. A NaN metric value matches no comparison but ``!=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

from codex_ml.runs.grammar import And, Compare, Expr, Field, InList, IsNull, Literal, Not, Or
from codex_ml.runs.where_fields import AGGREGATES


@dataclass(frozen=True)
class Query:
    """The SQL (selecting ``run_id`` in the order asked), its parameters, and whether it reads
    the ``points`` view (call ``RunIndex.ensure_points(con)`` first)."""

    sql: str
    params: list[Any]
    needs_points: bool


def compile_query(where: Expr | None, sort: tuple[Field, bool] | None = None, limit: int | None = None) -> Query:
    """The query for ``where`` (None: every run), sorted by ``sort`` = (field, descending)
    with runs lacking the field last, then by run_id (the only order without ``sort``, as in
    ``runs list``: a sweep's trials stay together), at most ``limit`` rows."""
    comp = _Compiler()
    condition = comp.expr(where) if where is not None else "TRUE"
    order = comp.order(*sort) if sort is not None else []
    comp.join_points()
    sql = (f"SELECT r.run_id FROM runs AS r{''.join(comp.joins)}\nWHERE {condition}\n"
           f"ORDER BY {', '.join(order + ['r.run_id'])}")
    params = comp.join_params + comp.where_params
    if limit is not None:
        sql += "\nLIMIT ?"
        params.append(int(limit))
    return Query(sql, params, comp.needs_points)


@dataclass
class _Compiler:
    """Collects one LEFT JOIN per distinct param/tag/metric a query names (one for all its
    values at a step), and the WHERE text."""

    joins: list[str] = dc_field(default_factory=list)
    join_params: list[Any] = dc_field(default_factory=list)
    where_params: list[Any] = dc_field(default_factory=list)
    aliases: dict[tuple, str] = dc_field(default_factory=dict)
    steps: dict[tuple[str, int], str] = dc_field(default_factory=dict)  # (key, step) -> column of fp
    needs_points: bool = False

    # -- boolean structure ------------------------------------------------------------------
    def expr(self, node: Expr) -> str:
        """SQL for ``node``; every leaf is TRUE or FALSE (never NULL), so and/or/not are two-valued."""
        if isinstance(node, Or):
            return "(" + " OR ".join(self.expr(item) for item in node.items) + ")"
        if isinstance(node, And):
            return "(" + " AND ".join(self.expr(item) for item in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.expr(node.inner)})"
        if isinstance(node, IsNull):
            return f"({self.null_test(node.field)} IS {'NOT ' if node.negated else ''}NULL)"
        if isinstance(node, InList):
            op, joiner = ("!=", " AND ") if node.negated else ("=", " OR ")
            return "(" + joiner.join(self.compare(node.field, op, value) for value in node.values) + ")"
        return self.compare(node.field, node.op, node.value)

    # -- one comparison ---------------------------------------------------------------------
    def compare(self, field: Field, op: str, value: Literal) -> str:
        """``field op value`` as SQL that is FALSE where the run lacks the field."""
        column, literal = self.operands(field, value, op)
        self.where_params.append(literal)
        if op in ("~", "!~"):
            test = f"regexp_matches({column}, ?)"
            test = f"{column} IS NOT NULL AND NOT {test}" if op == "!~" else test
        elif self.may_be_nan(field):
            # DuckDB orders NaN above every number (so NaN > 5 is true); a user means IEEE here.
            test = f"isnan({column}) OR {column} != ?" if op == "!=" else f"NOT isnan({column}) AND {column} {op} ?"
        else:
            test = f"{column} {op} ?"
        return f"COALESCE({test}, FALSE)"

    def operands(self, field: Field, value: Literal, op: str) -> tuple[str, Any]:
        """The SQL column to compare and the parameter to bind, chosen by field and value kind."""
        if field.kind == "run":
            return self.run_operands(field, value, op)
        if field.kind == "metric":
            return self.metric_column(field), value.value
        alias = self.keyed_join(field)
        if value.kind == "number":
            return f"{alias}.num", value.value
        if value.kind == "bool":
            # params.json keeps JSON booleans; the index may spell them true/True: compare lower-cased.
            return f"lower({alias}.value)", "true" if value.value else "false"
        return f"{alias}.value", value.value

    def run_operands(self, field: Field, value: Literal, op: str) -> tuple[str, Any]:
        """name/status/start/duration (columns of the runs table)."""
        if field.root == "start":
            if value.kind == "date":
                return "CAST(r.start AS DATE)", value.value
            if value.kind == "time":
                return "r.start", value.value
            return "CAST(r.start AS VARCHAR)", value.value  # only a regex gets here
        if field.root == "duration":
            return "r.duration", value.value
        text = value.text if value.kind != "bool" else str(value.value).lower()
        if field.root == "status" and op in ("=", "!="):
            # Statuses are upper case (FINISHED, FAILED, ...); 'finished' means the same.
            return "upper(r.status)", text.upper()
        return f"r.{field.root}", text

    def null_test(self, field: Field) -> str:
        """The column that is NULL where the run has no value for ``field``."""
        if field.kind == "run":
            return f"r.{field.root}"
        if field.kind == "metric":
            return self.metric_column(field)
        return f"{self.keyed_join(field)}.value"

    @staticmethod
    def may_be_nan(field: Field) -> bool:
        # min/max/mean skip non-finite values and count is an integer; last and @step may be NaN.
        return field.kind == "metric" and field.agg in (None, "last")

    # -- joins ------------------------------------------------------------------------------
    def keyed_join(self, field: Field) -> str:
        """Alias of a join giving (value, num) of one param or tag per run."""
        table = "params" if field.kind == "param" else "tags"
        num = "any_value(num)" if table == "params" else "TRY_CAST(any_value(value) AS DOUBLE)"
        return self.join((table, field.key), (
            f"SELECT run_id, any_value(value) AS value, {num} AS num FROM {table} WHERE key = ? GROUP BY run_id"),
            [field.key])

    def metric_column(self, field: Field) -> str:
        """``alias.<aggregate>`` for metrics.<key>.<agg>, ``alias.v`` for metrics.<key>@<step>."""
        if field.step is not None:
            self.needs_points = True
            column = self.steps.setdefault((field.key, field.step), f"v{len(self.steps)}")
            return f"fp.{column}"
        assert field.agg in AGGREGATES  # the column name below comes from this fixed list
        cols = ", ".join(f"any_value({agg}) AS {agg}" for agg in AGGREGATES)
        alias = self.join(("metric_stats", field.key),
                          f"SELECT run_id, {cols} FROM metric_stats WHERE key = ? GROUP BY run_id", [field.key])
        return f"{alias}.{field.agg}"

    def join(self, ident: tuple, select: str, params: list[Any]) -> str:
        """Add ``LEFT JOIN (select) AS fN`` once per ``ident``; returns fN."""
        if ident not in self.aliases:
            alias = f"f{len(self.aliases)}"
            self.aliases[ident] = alias
            self.joins.append(f"\nLEFT JOIN ({select}) AS {alias} ON {alias}.run_id = r.run_id")
            self.join_params.extend(params)
        return self.aliases[ident]

    def join_points(self) -> None:
        """One LEFT JOIN ``fp`` for every metrics.<key>@<step> named: the points are read once per
        query (from the NDJSON files: the slow part), however many steps or keys it names."""
        if not self.steps:
            return
        # The value at a step is the one logged last at or before it (not every step is logged).
        columns = ", ".join(f"arg_max(value, step) FILTER (WHERE key = ? AND step <= ?) AS {column}"
                            for column in self.steps.values())
        keys = sorted({key for key, _ in self.steps})
        self.joins.append(f"\nLEFT JOIN (SELECT run_id, {columns} FROM points WHERE key IN "
                          f"({', '.join('?' * len(keys))}) AND step <= ? GROUP BY run_id) AS fp ON fp.run_id = r.run_id")
        for key, step in self.steps:
            self.join_params.extend([key, step])
        self.join_params.extend([*keys, max(step for _, step in self.steps)])

    # -- --sort -----------------------------------------------------------------------------
    def order(self, field: Field, descending: bool) -> list[str]:
        """ORDER BY terms for ``field``: runs without it (or with NaN) last in both directions."""
        way = "DESC" if descending else "ASC"
        if field.kind == "run":
            return [f"r.{field.root} {way} NULLS LAST"]
        if field.kind == "metric":
            column = self.metric_column(field)
            terms = [f"{column} {way} NULLS LAST"]
            # NaN after the numbers, before the runs without the metric, whichever the direction.
            return [f"{column} IS NULL", f"isnan({column})"] + terms if self.may_be_nan(field) else terms
        alias = self.keyed_join(field)
        # Numbers in numeric order first, then other values as text, then runs without it.
        return [f"{alias}.num {way} NULLS LAST", f"{alias}.value {way} NULLS LAST"]
