"""``codex-ml runs ...``: list, query and compare every run under an output root (docs/runs.md).

Only typer is imported at load time; DuckDB, pyarrow and matplotlib are imported inside the
commands so ``codex-ml --help`` stays instant. User errors are one ``error:`` line, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from codex_ml.errors import user_errors

app = typer.Typer(
    name="runs",
    help="Find, query and compare runs under an output root (runs/, sweeps/, pipeline outputs).",
    no_args_is_help=True,
    add_completion=False,
)

ROOT_HELP = "Output root searched recursively for run directories (e.g. runs, sweeps/lr, out)."
COLUMNS_HELP = ("Comma-separated columns to show, e.g. name,status,params.training.lr,metrics.val/loss.min "
                "(default: name, status, start, duration and each metric's last value).")


@app.command("list")
def list_runs(
    root: Annotated[Path, typer.Argument(help=ROOT_HELP)],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (one object per run) instead of a table.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    columns: Annotated[Optional[str], typer.Option("--columns", help=COLUMNS_HELP)] = None,
) -> None:
    """One row per run: name, status, start, duration, sinks, params, tags, and per metric last/min/max/mean/count."""
    from codex_ml.runs.listing import list_command

    with user_errors():
        list_command(root, json_output=json_output, csv_output=csv_output, columns=columns)


@app.command("query")
def query_runs(
    root: Annotated[Path, typer.Argument(help=ROOT_HELP)],
    where: Annotated[Optional[str], typer.Option("--where", "-w", help=(
        "Filter, e.g. \"params.training.lr < 1e-3 and (metrics.val/loss.min < 1.8 or name ~ 'sft')\" "
        "(grammar: docs/runs.md)."))] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort by this field, e.g. metrics.val/loss.min; a leading - sorts descending.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Show at most this many runs.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (one object per run) instead of a table.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    columns: Annotated[Optional[str], typer.Option("--columns", help=COLUMNS_HELP)] = None,
) -> None:
    """The runs whose fields match --where (and, or, not, comparisons, ~ regex, in, is null, aggregates, value at a step)."""
    from codex_ml.runs.query_command import query_command

    with user_errors():
        query_command(root, where=where, sort=sort, limit=limit, json_output=json_output,
                      csv_output=csv_output, columns=columns)


@app.command("compare")
def compare_runs(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="Metric to compare, a name or a glob such as 'val/*' (repeatable; default: those every run logged, losses first, at most 6).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the overlaid curves to this image (e.g. cmp.png).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON instead of tables.")] = False,
) -> None:
    """Overlaid curves (one colour per run, spikes kept) and a table of only the params that differ."""
    from codex_ml.runs.compare import compare_command

    with user_errors():
        compare_command(runs, metrics=metric or [], out=out, json_output=json_output)
