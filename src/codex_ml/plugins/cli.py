"""``codex-ml plugins``: list, show and diagnose the registered plugins.

Listing imports no plugin; ``show`` imports one and ``diagnose`` imports them all (torch
included, for the model plugins), so they import inside their bodies.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="plugins",
    help="Inspect plugins: sinks, models, tokenizers, datasets, pipeline stages, system-metric collectors.",
    no_args_is_help=True,
)

GROUP_ARG_HELP = "Plugin group: sinks, models, tokenizers, datasets, pipeline_stages, system_metric_collectors."
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry() -> Any:
    from codex_ml.plugins.registry import Registry

    return Registry()


def _fail(message: str) -> typer.Exit:
    """Print the one ``error:`` line of a user error; raise the Exit returned (status 2)."""
    from codex_ml.errors import print_error

    return typer.Exit(print_error(message))


@app.command("list")
def list_plugins(
    group: Annotated[str | None, typer.Argument(help=GROUP_ARG_HELP, show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """List registered plugins (all groups, or one) without importing any of them."""
    from codex_ml.plugins.registry import PluginError, module_exists

    registry = _registry()
    try:
        specs = registry.specs(group)
    except PluginError as exc:
        raise _fail(str(exc)) from exc
    rows = [{"group": s.group, "name": s.name, "target": s.target, "source": s.source,
             "planned": s.planned and not module_exists(s.module)} for s in specs]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_list(rows, group)
    if registry.problems:
        typer.echo(f"{len(registry.problems)} plugin(s) could not be registered; run `codex-ml plugins diagnose`.", err=True)


def _print_list(rows: list[dict[str, Any]], group: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from codex_ml.plugins.checks import GROUP_HELP
    from codex_ml.plugins.registry import check_group

    title = f"{check_group(group)}: {GROUP_HELP[check_group(group)]}" if group else "codex_ml plugins"
    table = Table(title=title, title_justify="left")
    for column in ("group", "name", "target", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        source = row["source"] + (" (planned)" if row["planned"] else "")
        table.add_row(*map(escape, (row["group"], row["name"], row["target"], source)))
    console = Console()
    console.print(table)
    if not rows:
        console.print("No plugins registered here yet; docs/plugins.md says how to add one.")


@app.command()
def show(
    group: Annotated[str, typer.Argument(help=GROUP_ARG_HELP, show_default=False)],
    name: Annotated[str, typer.Argument(help="Plugin name, as `codex-ml plugins list` shows it.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Load one plugin and show its module, summary, signature and API version."""
    from codex_ml.plugins.describe import describe
    from codex_ml.plugins.registry import ERROR, PluginError

    try:
        status = _registry().status(group, name)
    except PluginError as exc:
        raise _fail(str(exc)) from exc
    info = describe(status)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        _print_details(info)
    if status.state == ERROR:
        raise typer.Exit(1)


def _print_details(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.items():
        if value not in (None, ""):
            table.add_row(key, escape(str(value)))
    Console().print(table)


@app.command()
def diagnose(
    group: Annotated[str | None, typer.Argument(help=GROUP_ARG_HELP, show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Load every plugin and report each one's problems; exit 1 when any plugin is broken."""
    from codex_ml.plugins.registry import PluginError

    registry = _registry()
    try:
        statuses = _diagnose_with_progress(registry, group, show=not as_json)
    except PluginError as exc:
        raise _fail(str(exc)) from exc
    failed = [s for s in statuses if s.failed]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "plugins": [s.as_dict() for s in statuses]}, indent=2))
    else:
        _print_statuses(statuses, failed)
    if failed:
        raise typer.Exit(1)


def _diagnose_with_progress(registry: Any, group: str | None, show: bool) -> list[Any]:
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not (show and console.is_terminal)) as progress:
        task = progress.add_task("loading plugins", total=len(registry.specs(group)))

        def advance(spec: Any) -> None:
            progress.update(task, advance=1, description=f"loading {spec.group}/{spec.name}")

        return registry.diagnose(group, on_each=advance)


def _print_statuses(statuses: list[Any], failed: list[Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    styles = {"ok": "green", "planned": "cyan", "missing-extra": "yellow", "error": "bold red"}
    table = Table(title="plugin diagnosis", title_justify="left")
    for column in ("group", "name", "state", "source"):
        table.add_column(column, overflow="fold")
    for status in statuses:
        spec = status.spec
        state = f"[{styles.get(status.state, '')}]{status.state}[/]"
        table.add_row(escape(spec.group), escape(spec.name), state, escape(spec.source))
    console = Console()
    console.print(table)
    # Details below the table, one per line, so long messages stay readable in narrow terminals.
    for status in statuses:
        if status.detail:
            where = f"{status.spec.group}/{status.spec.name} ({status.spec.source}, {status.spec.target})"
            console.print(f"[{styles.get(status.state, '')}]{status.state}[/] {escape(where)}: {escape(status.detail)}")
    verdict = f"{len(failed)} broken plugin(s)" if failed else "all plugins load"
    console.print(f"{verdict}; {len(statuses) - len(failed)} of {len(statuses)} fine.")
