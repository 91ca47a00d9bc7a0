"""The bodies of ``codex-ml monitoring inspect`` and ``export``, with no Typer in them.

Two callers share them: the Typer commands in ``codex_ml.monitoring.cli`` and the console
script's lean path (``codex_ml.cli.lean``), which parses these two command lines itself so a
cold ``inspect --json`` never imports Typer, click or pydantic (about 0.1 s of CPU of a new
process). Everything here imports inside the functions for the same reason. A user error
prints one ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codex_ml.errors import user_errors

__all__ = ["err_console", "guard", "progress", "run_export", "run_inspect"]


def err_console() -> Any:
    """A rich console on stderr (spinners and status lines)."""
    from rich.console import Console

    return Console(stderr=True)


def progress(message: str) -> Any:
    """A spinner on stderr while reading, only when stderr is a terminal: elsewhere rich shows
    nothing anyway, and not importing it saves ~40 ms of a cold ``--json`` command."""
    if not sys.stderr.isatty():
        import contextlib

        return contextlib.nullcontext()
    return err_console().status(message)


def guard(action: Callable[[], Any]) -> Any:
    """Run ``action``; a CodexMLError becomes one 'error:' line and exit status 2."""
    with user_errors():
        return action()


def run_inspect(paths: list[Path], json_output: bool) -> None:
    """``monitoring inspect PATHS [--json]``: the summary tables, or JSON for machines."""
    from codex_ml.monitoring import duckdb_loading

    warm_up = duckdb_loading.warm_up_in_background()  # DuckDB connects while the rest imports
    try:
        from codex_ml.monitoring import inspect as inspect_mod

        def action() -> None:
            with progress("reading…"):
                results = inspect_mod.inspect_paths(paths)
            if json_output:
                sys.stdout.buffer.write(inspect_mod.to_json(results))
                sys.stdout.flush()
            else:
                from codex_ml.monitoring.console import table_console

                inspect_mod.render(results, table_console())

        guard(action)
    finally:
        warm_up.join()


def run_export(path: Path, out: Path | None, fmt: str | None, wide: bool, system: bool, to: str | None,
               tracking_uri: str | None, experiment: str | None, json_output: bool) -> None:  # fmt: skip
    """``monitoring export``: write a file (CSV/Parquet/JSONL), or replay into a backend with ``to``."""
    if to is not None:
        guard(lambda: _replay(path, to, tracking_uri, experiment, json_output))
    else:
        guard(lambda: _export(path, out, fmt, wide, system, json_output))


def _export(path: Path, out: Path | None, fmt: str | None, wide: bool, system: bool, json_output: bool) -> None:
    from codex_ml.monitoring import export as export_mod
    from codex_ml.monitoring.loading import load
    from codex_ml.monitoring.runs import SYSTEM, MonitoringInputError, resolve

    if out is None:
        raise MonitoringInputError("OUT", "missing output file; e.g. codex-ml monitoring export runs/demo metrics.parquet")
    chosen = export_mod.pick_format(fmt, out)
    source = resolve(path)
    if system and source.kind != SYSTEM and not source.system_files:
        raise MonitoringInputError(path, "has no system_metrics.jsonl to export (start the run with --system-metrics)")
    main, kind = (source.system_files[0], SYSTEM) if system and source.kind != SYSTEM else (source.main, source.kind)
    # pyarrow imports (holding the GIL) while DuckDB parses (without it): ~0.1 s off a cold export.
    warm_up = export_mod.warm_up_in_background() if chosen != "jsonl" else None
    try:
        with progress(f"exporting {main} …"):
            rows = export_mod.export(load(main, kind), out, chosen, wide=wide)
    finally:
        if warm_up is not None:
            warm_up.join()
    report({"out": str(out), "format": chosen, "layout": "wide" if wide else "long", "rows": rows},
           f"wrote {rows:,} rows ({'wide' if wide else 'long'}) to {out}", json_output)  # fmt: skip


def _replay(path: Path, to: str, tracking_uri: str | None, experiment: str | None, json_output: bool) -> None:
    from codex_ml.monitoring import replay

    result = replay.replay(path, to, tracking_uri=tracking_uri, experiment=experiment, progress=not json_output)
    report(result.to_dict(), result.describe(), json_output)


def report(data: dict[str, Any], text: str, json_output: bool) -> None:
    """Print what a command did: ``data`` as one JSON line with ``--json``, else ``text``."""
    if json_output:
        import json

        text = json.dumps(data)
    # What typer.echo does for a plain line: the text, a newline, a flush.
    print(text, flush=True)
