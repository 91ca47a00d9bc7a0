"""``codex-ml monitoring ...``: read runs back (inspect, export/replay, tail, plot, ui, health).

Also runnable as ``python -m codex_ml.monitoring.cli``. This module imports only typer
and rich at load time; numpy, pyarrow, matplotlib and the backends are imported inside the
commands, so ``codex-ml --help`` stays instant. The bodies of ``inspect`` and ``export`` live
in ``read_commands`` (no Typer), which the console script's lean path calls too. Errors
print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from codex_ml.monitoring import read_commands
from codex_ml.monitoring.console import table_console
from codex_ml.monitoring.read_commands import err_console as _err_console
from codex_ml.monitoring.read_commands import guard as _guard

app = typer.Typer(
    name="monitoring",
    help="Read runs back: inspect, export or replay into a backend, tail, plot, open a viewer, backtest health rules.",
    no_args_is_help=True,
    add_completion=False,
)

FORMATS_HELP = "csv | parquet | jsonl (default: from OUT's suffix)"
BACKENDS_HELP = "tensorboard | mlflow | wandb: replay the run's NDJSON into that backend (idempotent)"


# The console script parses `inspect` and `export` itself first (codex_ml.cli.lean, no Typer): give a new option
# of these two its spelling there as well, or those command lines go through Typer (correct, only slower).
@app.command()
def inspect(
    paths: Annotated[list[Path], typer.Argument(help="Run directories or NDJSON files (metrics or system metrics).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of tables.")] = False,
) -> None:
    """Per-metric count, steps, min/max/mean/last, NaN/Inf, wall-time span and rate; unreadable lines; health events."""
    read_commands.run_inspect(paths, json_output)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="Run directory or metrics NDJSON file.")],
    out: Annotated[Optional[Path], typer.Argument(help="Output file (not used with --to).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--fmt", "-f", help=FORMATS_HELP)] = None,
    wide: Annotated[bool, typer.Option("--wide", help="One row per step, one column per metric (default: long).")] = False,
    system: Annotated[bool, typer.Option("--system", help="Export the run's system_metrics.jsonl instead.")] = False,
    to: Annotated[Optional[str], typer.Option("--to", help=BACKENDS_HELP)] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI for --to mlflow (default: the run's).")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment for --to mlflow (default: the run's).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write metrics to CSV/Parquet/JSONL, or replay them into TensorBoard, MLflow or W&B."""
    read_commands.run_export(path, out, fmt, wide, system, to, tracking_uri, experiment, json_output)


@app.command()
def tail(
    path: Annotated[Path, typer.Argument(help="Run directory or metrics NDJSON file.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records as the run writes them.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Records to show first.")] = 10,
    until_closed: Annotated[bool, typer.Option(help="With -f: stop once the run's summary.json appears.")] = False,
    interval: Annotated[float, typer.Option(min=0.01, help="Seconds between checks for new data.")] = 0.5,
    json_output: Annotated[bool, typer.Option("--json", help="Print each record as one JSON line.")] = False,
) -> None:
    """Print the last records of a run and its health events; with -f follow both live (Ctrl-C to stop)."""
    from codex_ml.monitoring import tail as tail_mod

    def action() -> None:
        printer = tail_mod.json_printer if json_output else tail_mod.text_printer
        try:
            tail_mod.tail(path, printer, follow=follow, lines=lines, until_closed=until_closed, interval=interval)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a user stops following

    _guard(action)


@app.command()
def plot(
    paths: Annotated[list[Path], typer.Argument(help="Run directories or metrics NDJSON files (overlaid).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("curves.png"),
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="Glob of metrics to plot (repeatable; default all).")] = None,
    max_points: Annotated[int, typer.Option(min=4, help="Points per curve after min/max downsampling.")] = 2000,
    system: Annotated[bool, typer.Option(help="Add system-metrics panels when the run has them.")] = True,
) -> None:
    """Loss curves and system-metric panels as a PNG (spikes survive downsampling; health events marked)."""
    from codex_ml.monitoring import plot as plot_mod

    def action() -> None:
        with _err_console().status("plotting…"):
            panels = plot_mod.plot(paths, output, patterns=metric or None, max_points=max_points, system=system)
        typer.echo(f"wrote {output} ({panels} panels)")

    _guard(action)


@app.command()
def ui(
    path: Annotated[Path, typer.Argument(help="Run directory (with --optuna: a sweep directory, sweeps/<sweep>).")],
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Start TensorBoard on the run's event files.")] = False,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Start the MLflow UI on the run's store.")] = False,
    optuna: Annotated[bool, typer.Option("--optuna", help="Start optuna-dashboard on the sweep's optuna.db (read-only).")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (local only by default).")] = "127.0.0.1",
) -> None:
    """Start TensorBoard or the MLflow UI (a run), or optuna-dashboard (a sweep); print the URL, wait for Ctrl-C."""
    from codex_ml.monitoring import ui as ui_mod

    def action() -> None:
        kind = ui_mod.pick_viewer(tensorboard, mlflow, optuna)
        viewer = None
        # A signal at any point (even while the URL is printed) must still stop the viewer.
        with ui_mod.sigterm_as_interrupt():
            try:
                viewer = ui_mod.start_viewer(path, kind, port=port, host=host)
                typer.echo(f"{viewer.kind} for {path}: {viewer.url}   (Ctrl-C to stop)")
                viewer.wait()
            except KeyboardInterrupt:
                pass
            finally:
                if viewer is not None:
                    viewer.stop()

    _guard(action)


@app.command()
def health(
    path: Annotated[Path, typer.Argument(help="Run directory (a finished or interrupted run).")],
    rules: Annotated[Optional[Path], typer.Option("--rules", help="YAML file with a health: mapping (default: the built-in rules with their defaults; docs/health.md).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="health.<rule>.<key>=value on top of --rules (repeatable).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")] = False,
) -> None:
    """Evaluate the health rules over a run's files and print when each would have fired."""
    from codex_ml.health import backtest as backtest_mod
    from codex_ml.health import render

    def action() -> None:
        config = render.load_rules_file(rules).with_overrides(overrides or [])
        with _err_console().status("replaying…"):
            report = backtest_mod.backtest_report(path, config)
        if json_output:
            import json

            typer.echo(json.dumps(report.to_dict()))
        else:
            render.render(report, table_console())

    _guard(action)


if __name__ == "__main__":
    app(prog_name="python -m codex_ml.monitoring.cli")
