"""``codex-ml runs query ROOT --where EXPR [--sort KEY] [--limit N]`` (docs/runs.md).

The expression and the sort key are parsed first (codex_ml.runs.grammar), so a typo is one
``error:`` line with its column before any run is read; then the index is opened, the query
compiled (codex_ml.runs.sql) and run in DuckDB, and the matching runs printed like ``runs list``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.runs.grammar import And, Compare, Expr, Not, Or, QueryError, parse_sort, parse_where
from codex_ml.runs.listing import open_root
from codex_ml.runs.render import print_runs
from codex_ml.runs.sql import compile_query

__all__ = ["query_command", "select_runs"]


def query_command(root: Path, *, where: str | None, sort: str | None, limit: int | None, json_output: bool,
                  csv_output: bool, columns: str | None) -> None:  # fmt: skip
    """Print the runs under ``root`` that match ``where`` (all runs when None), sorted by
    ``sort`` (a field; leading '-' for descending; runs lacking it last), at most ``limit``."""
    if limit is not None and limit < 1:
        raise CodexMLError(f"--limit must be at least 1, got {limit}")
    tree = parse_where(where) if where is not None else None
    order = parse_sort(sort) if sort else None
    index = open_root(root)
    con = index.connect()
    try:
        run_ids = select_runs(con, tree, order, limit, index=index, where=where or "")
        title = f"{len(run_ids)} of {len(index.entries)} runs under {root}" + (f" where {where}" if where else "")
        print_runs(con, run_ids, columns=columns, json_output=json_output, csv_output=csv_output, title=title,
                   lead=sort.lstrip("-") if sort else None)
    finally:
        con.close()


def select_runs(con: Any, tree: Expr | None, order: tuple[Any, bool] | None = None, limit: int | None = None, *,
                index: Any = None, where: str = "") -> list[str]:  # fmt: skip
    """The run ids ``tree`` selects on ``con`` (the index tables), in order. ``index`` (a
    RunIndex) adds the points view when the query needs a value at a step."""
    import duckdb

    if tree is not None:
        _check_regexes(con, tree, where)
    query = compile_query(tree, order, limit)
    if query.needs_points and index is not None:
        index.ensure_points(con)
    try:
        return [row[0] for row in con.execute(query.sql, query.params).fetchall()]
    except duckdb.Error as exc:
        # Not expected once the grammar and the regexes passed; say what DuckDB said, on one line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueryError(f"DuckDB could not run the query ({first})", 1, where) from None


def _check_regexes(con: Any, tree: Expr, where: str) -> None:
    """A pattern Python accepts may still be one DuckDB's RE2 refuses (look-ahead, back-references):
    try each on DuckDB first, so the error names the pattern's column."""
    import duckdb

    for node in _comparisons(tree):
        if node.op in ("~", "!~"):
            try:
                con.execute("SELECT regexp_matches('', ?)", [node.value.value]).fetchall()
            except duckdb.Error as exc:
                reason = str(exc).strip().splitlines()[-1].removeprefix("Invalid Input Error: ")
                raise QueryError(f"regular expression DuckDB cannot use ({reason})", node.value.column,
                                 where) from None


def _comparisons(tree: Expr) -> Iterator[Compare]:
    if isinstance(tree, (And, Or)):
        for item in tree.items:
            yield from _comparisons(item)
    elif isinstance(tree, Not):
        yield from _comparisons(tree.inner)
    elif isinstance(tree, Compare):
        yield tree
