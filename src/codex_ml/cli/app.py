"""``codex-ml``: the Typer application. Commands import heavy modules inside their bodies
so that ``codex-ml --help`` stays instant and loads no torch or tracking backend.

The console script (``codex_ml.cli.__main__.main``) imports this module only for command lines
its lean path does not take (``codex_ml.cli.lean``); :func:`run` is what it calls then."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from codex_ml import __version__
from codex_ml.errors import print_error, user_errors
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.flags import fill_optional_values, with_tracking_options

app = typer.Typer(
    name="codex-ml",
    help="Train small language models and watch them train.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the codex_ml version."""
    typer.echo(__version__)


@app.command()
@with_tracking_options
def demo(
    steps: Annotated[int, typer.Option(min=1, help="Training steps (300 takes about 10 s on 2 CPU cores).")] = 300,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    health: Annotated[list[str] | None, typer.Option(
        "--health", metavar="health.RULE.KEY=VALUE",
        help="A health-rule setting, e.g. health.spike.action=stop (repeatable; docs/health.md).")] = None,
    tracking: TrackingConfig | None = None,
) -> None:
    """Train a small character transformer on the bundled text, logging to the chosen sinks."""
    from codex_ml.cli.demo_command import run_demo

    with user_errors():
        run_demo(tracking or TrackingConfig(), steps=steps, progress=progress, health=health or [])


from codex_ml.plugins.cli import app as plugins_app  # noqa: E402  (light: Typer only)

app.add_typer(plugins_app, name="plugins")

from codex_ml.monitoring.cli import app as monitoring_app  # noqa: E402  (light: Typer and rich only)

app.add_typer(monitoring_app, name="monitoring")

from codex_ml.cli.runs_app import app as runs_app  # noqa: E402  (light: Typer only)

app.add_typer(runs_app, name="runs")


@app.command("train-model")
@with_tracking_options
def train_model(
    overrides: Annotated[list[str] | None, typer.Argument(metavar="KEY=VALUE...", help="Config overrides, Hydra style: training.max_steps=200 model.n_layer=2", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config, e.g. configs/training/base.yaml (default: built-in defaults on the bundled sample text).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run in this directory (runs/<name>) from its latest checkpoint.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    tracking: TrackingConfig | None = None,
) -> None:
    """Train the transformer language model described by a config (works under torchrun too)."""
    from codex_ml.cli.train_command import run_train_model

    with user_errors():
        run_train_model(config, overrides or [], resume, tracking or TrackingConfig(), progress=progress)


@app.command("sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    spec: Annotated[Path, typer.Argument(help="A sweep file, e.g. configs/sweep_files/lr_depth.yaml (docs/sweeps.md).")],
    args: Annotated[list[str] | None, typer.Argument(metavar="[KEY=VALUE | TRACKING FLAG]...", help="More overrides and tracking flags for every trial (they win over the file).", show_default=False)] = None,
) -> None:
    """Run the sweep a file describes: the Hydra multirun python -m codex_ml.cli.main -m ... it stands for."""
    from codex_ml.cli.main import main as hydra_main
    from codex_ml.sweeps.spec import spec_arguments

    with user_errors():
        argv = spec_arguments(spec)
    hydra_main([*argv, *(args or [])])


def run(args: list[str]) -> None:
    """Run the Typer app on ``args`` (``--system-metrics`` with no value means AUTO); exits via SystemExit.

    A bad command line (unknown option, value of the wrong type or out of range) is one
    ``error:`` line and exit status 2, like every other user error.
    """
    import sys

    errors = _click_exceptions()
    args = fill_optional_values(args)
    try:
        code = typer.main.get_command(app).main(args=args, prog_name="codex-ml", standalone_mode=False)
    except getattr(errors, "NoArgsIsHelpError", ()) as exc:  # a bare group: its help, as click shows it
        exc.show()
        code = exc.exit_code
    except errors.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        code = print_error(exc.format_message() + hint)
    except errors.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        code = 1
    # No command returns a value: what comes back is the code of a typer.Exit (None: success).
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> Any:
    """The exceptions module of the click that Typer runs on (recent Typer vendors its own)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions

