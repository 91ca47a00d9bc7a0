"""The console script's lean path: ``codex-ml monitoring inspect`` and ``export`` without Typer.

Reading a run back is a short command, often run once in a new process, and building the Typer
app costs more than the read's own start-up: importing Typer, pydantic and the tracking flags,
building every command, then coercing the arguments (together ~0.1 s of CPU, 0.15-0.2 s of
wall on a loaded machine; docs/benchmarks.md, "Monitoring CLI"). So the console script first
tries this parser, which knows only these two command lines in their plain spellings:

    codex-ml monitoring inspect PATH... [--json]
    codex-ml monitoring export PATH [OUT] [--fmt|-f FMT] [--wide] [--system] [--to BACKEND]
                                          [--tracking-uri URI] [--experiment NAME] [--json]

(options anywhere among the arguments, ``--long=value`` too). Anything else (``--help``, an
unknown or repeated option, a missing or extra argument, an empty word, a value that starts
with ``-``, ``--``) returns None and the Typer app parses the command line instead, so help
and usage errors stay exactly Typer's. Both paths run the same command bodies
(``codex_ml.monitoring.read_commands``). This module imports nothing heavy at load time.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

__all__ = ["Command", "parse", "run"]


class Command(NamedTuple):
    """A parsed lean command line: the call that runs it, and whether it only reads the run
    (inspect, export to a file) rather than replaying it into a backend (``export --to``)."""

    call: Callable[[], None]
    reads_only: bool


class _Grammar(NamedTuple):
    """One command's options (spelling -> parameter) and how many arguments it takes."""

    flags: dict[str, str]
    values: dict[str, str]
    min_args: int
    max_args: int


_GRAMMARS = {
    "inspect": _Grammar({"--json": "json_output"}, {}, 1, sys.maxsize),
    "export": _Grammar(
        {"--json": "json_output", "--wide": "wide", "--system": "system"},
        {"--fmt": "fmt", "-f": "fmt", "--to": "to", "--tracking-uri": "tracking_uri", "--experiment": "experiment"},
        1, 2,
    ),
}  # fmt: skip


def parse(argv: list[str]) -> Command | None:
    """The command ``argv`` (without the program name) asks for, ready to call; None when it is
    not one of the plain spellings above (the Typer app then parses it)."""
    if len(argv) < 2 or argv[0] != "monitoring" or argv[1] not in _GRAMMARS:
        return None
    grammar = _GRAMMARS[argv[1]]
    got = _split(argv[2:], grammar)
    if got is None:
        return None
    arguments, options = got
    if not grammar.min_args <= len(arguments) <= grammar.max_args:
        return None
    from codex_ml.monitoring import read_commands

    paths = [Path(word) for word in arguments]
    if argv[1] == "inspect":
        return Command(lambda: read_commands.run_inspect(paths, bool(options.get("json_output"))), True)
    return Command(lambda: read_commands.run_export(
        paths[0], paths[1] if len(paths) > 1 else None, options.get("fmt"), bool(options.get("wide")),
        bool(options.get("system")), options.get("to"), options.get("tracking_uri"), options.get("experiment"),
        bool(options.get("json_output")),
    ), reads_only="to" not in options)  # fmt: skip


def _split(words: list[str], grammar: _Grammar) -> tuple[list[str], dict[str, str | bool]] | None:
    """(arguments, options) of a plain command line; None at the first thing that is not plain."""
    arguments: list[str] = []
    options: dict[str, str | bool] = {}
    rest = iter(words)
    for word in rest:
        if not word:
            return None
        if not word.startswith("-"):
            arguments.append(word)
            continue
        name, equals, value = word.partition("=") if word.startswith("--") else (word, "", "")
        param = grammar.flags.get(name) or grammar.values.get(name)
        if param is None or param in options or (equals and name in grammar.flags):
            return None  # unknown, repeated, or a flag given a value: Typer says what is wrong
        if name in grammar.flags:
            options[param] = True
            continue
        if not equals:
            value = next(rest, "")
        if not value or value.startswith("-"):
            return None
        options[param] = value
    return arguments, options


def run(argv: list[str], *, end_process: bool = False) -> bool:
    """Run ``argv`` when it is a lean command line and return True; False leaves it to Typer.

    A user error exits with status 2 (one ``error:`` line) from inside the command; Ctrl-C
    prints what click prints (a newline, then ``Aborted!``) and exits with status 1. With
    ``end_process`` (the console script), a command that only reads the run (inspect, export
    to a file) ends the process itself once done: see :func:`_end_process`.
    """
    command = parse(argv)
    if command is None:
        return False
    # Python's cyclic collector ran ~80 times during a cold inspect (10-20 ms) and finds nothing
    # to free: a read makes arrays and dicts, not cycles. Left on for a replay (backend clients
    # may make cycles for as long as the replay runs); turned back on afterwards.
    collecting = gc.isenabled()
    if command.reads_only:
        gc.disable()
    try:
        command.call()
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        print("Aborted!", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if collecting:
            gc.enable()
    if end_process and command.reads_only:
        _end_process()
    return True


def _end_process() -> None:
    """Flush stdout and stderr, then leave at once with status 0 (``os._exit``).

    Tearing the interpreter down after a read (a last garbage collection over numpy's and
    DuckDB's modules, every module's dict, DuckDB's catalogue) took 30-90 ms of a cold
    ``inspect`` on a loaded machine, for nothing: the output is written and flushed, the files
    closed, the helper threads joined, and the database lives in memory. A replay (``--to``)
    never comes here: the backends may hold atexit work (MLflow's async logging).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
