"""``codex-ml runs list ROOT``: one row per run under an output root (docs/runs.md)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from codex_ml.runs.index import RunIndex, RunsRootError, open_index
from codex_ml.runs.render import print_runs

__all__ = ["list_command", "open_root"]


def list_command(root: Path, *, json_output: bool, csv_output: bool, columns: str | None) -> None:
    """Print every run under ``root`` as a table, JSON or CSV (``--columns`` picks the fields)."""
    index = open_root(root)
    con = index.connect()
    try:
        print_runs(con, list(index.entries), columns=columns, json_output=json_output, csv_output=csv_output,
                   title=f"{len(index.entries)} run{'s' if len(index.entries) != 1 else ''} under {root}")
    finally:
        con.close()


def open_root(root: Path) -> RunIndex:
    """The index of ``root``, with a progress line on stderr while many runs are read; raises
    RunsRootError (one error line, exit 2) when ``root`` is missing or holds no run."""
    index = open_index(root, progress=_status)
    if not index.entries:
        raise RunsRootError(root, "no runs found in it")
    return index


def _status(message: str) -> AbstractContextManager[Any]:
    from rich.console import Console

    return Console(stderr=True).status(message + " ...")
