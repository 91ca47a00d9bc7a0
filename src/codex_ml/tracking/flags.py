"""The tracking flags, defined once and used by every entry point (argparse and Typer).

``--enable-tensorboard``, ``--enable-wandb``, ``--mlflow-enable`` (alias
``--enable-mlflow``), ``--mlflow-tracking-uri``, ``--mlflow-experiment``, ``--run-name``,
``--output-root``, ``--sink NAME`` (repeatable), ... Each maps to a :class:`TrackingConfig` field.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from codex_ml.config_schema import is_override
from codex_ml.tracking.config import TRACKING_FLAGS, Flag, TrackingConfig  # the table lives with the fields it sets


def add_tracking_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> argparse._ArgumentGroup:
    """Add the tracking flags to an argparse parser, in their own help group.

    ``exclude`` names fields to leave out, e.g. ``("run_name", "output_root")`` for a command
    whose run directory is set another way (the pipeline's ``--output-dir``).
    """
    group = parser.add_argument_group("tracking")
    for flag in TRACKING_FLAGS:
        if flag.field in exclude:
            continue
        if flag.is_switch:
            group.add_argument(*flag.names, dest=flag.field, action="store_true", default=None, help=flag.help)
        elif flag.multiple:
            group.add_argument(*flag.names, dest=flag.field, action="append", type=flag.type, default=None, metavar=flag.metavar, help=flag.help)
        elif flag.const is not None:
            group.add_argument(*flag.names, dest=flag.field, nargs="?", const=flag.const, default=None, metavar=flag.metavar, help=flag.help)
        else:
            group.add_argument(*flag.names, dest=flag.field, type=flag.type, default=None, metavar=flag.metavar, help=flag.help)
    return group


def fill_optional_values(argv: list[str]) -> list[str]:
    """Insert the implied value after flags given without one (``--system-metrics`` -> AUTO).

    Typer/click options cannot take an optional value, so CLIs built on them call this on
    their argv first; argparse handles it itself (``nargs="?"``).
    """
    consts = {name: flag.const for flag in TRACKING_FLAGS if flag.const is not None for name in flag.names}
    out: list[str] = []
    for index, arg in enumerate(argv):
        out.append(arg)
        following = argv[index + 1] if index + 1 < len(argv) else None
        # No value follows when the next word is another flag or a Hydra-style key=value override.
        if arg in consts and (following is None or following.startswith("-") or is_override(following)):
            out.append(consts[arg])
    return out


def tracking_config_from(values: argparse.Namespace | Mapping[str, Any], base: TrackingConfig | None = None) -> TrackingConfig:
    """A TrackingConfig from parsed flags; flags left unset keep ``base``'s values.

    Out-of-range values raise :class:`~codex_ml.tracking.config.TrackingConfigError` and an
    unknown ``--sink`` name a PluginError (both CodexMLErrors), before anything is written.
    """
    data = vars(values) if isinstance(values, argparse.Namespace) else dict(values)
    changes = {f.field: data[f.field] for f in TRACKING_FLAGS if _is_set(data.get(f.field))}
    config = (base or TrackingConfig()).replace(**changes)
    check_sink_names(changes.get("extra_sinks") or [])
    return config


def check_sink_names(names: list[str]) -> None:
    """Raise UnknownPluginError for a ``--sink`` name no plugin registers (nothing is imported)."""
    if not names:
        return
    from codex_ml.plugins.registry import Registry

    registry = Registry()
    for name in names:
        registry.spec("sinks", name.strip())


def _is_set(value: Any) -> bool:
    """Whether a parsed flag value was given (None, False and an empty list mean unset; 0 is set)."""
    return value is not None and value is not False and not (isinstance(value, (list, tuple)) and not value)


def with_tracking_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Typer decorator: add the tracking flags to a command; it receives ``tracking=TrackingConfig``."""
    import typer

    signature = inspect.signature(func)
    # Resolve string annotations (from __future__ import annotations) so Typer sees the Options.
    hints = typing.get_type_hints(func, include_extras=True)
    kept = [p.replace(annotation=hints.get(name, p.annotation)) for name, p in signature.parameters.items() if name != "tracking"]
    added = [
        inspect.Parameter(
            flag.field,
            inspect.Parameter.KEYWORD_ONLY,
            default=False if flag.is_switch else None,
            annotation=Annotated[_typer_type(flag), typer.Option(*flag.names, help=flag.help, metavar=flag.metavar, rich_help_panel="Tracking")],
        )
        for flag in TRACKING_FLAGS
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from codex_ml.errors import user_errors

        flag_values = {f.field: kwargs.pop(f.field, None) for f in TRACKING_FLAGS}
        with user_errors():  # an out-of-range flag: one error line, exit 2, before the command runs
            tracking = tracking_config_from(flag_values)
        return func(*args, tracking=tracking, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    return wrapper


def _typer_type(flag: Flag) -> Any:
    """The annotation Typer needs for ``flag``: bool, ``T | None`` or ``list[T] | None``."""
    if flag.is_switch:
        return bool
    return (list[flag.type] if flag.multiple else flag.type) | None  # type: ignore[valid-type]
