"""The console the read-back commands print tables on (monitoring inspect/health, runs list/query/compare).

Light: rich only, imported when a table is printed.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["table_console"]


def table_console(**options: Any) -> Any:
    """A rich console for tables: the terminal's width, or 160 columns when piped or logged, where
    rich would use 80 and cut numbers short with an ellipsis. ``options`` go to rich's Console."""
    from rich.console import Console

    console = Console(**options)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160, **options)
    return console
