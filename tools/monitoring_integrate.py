#!/usr/bin/env python3
"""Run a short real training job and stream its metrics to the chosen tracking sinks.

    python tools/monitoring_integrate.py --run-name demo --enable-tensorboard --enable-mlflow
    WANDB_MODE=offline WANDB_PROJECT=myproj python tools/monitoring_integrate.py --run-name demo --enable-wandb

Trains a small character-level transformer on the bundled public-domain text and logs
scalars, histograms, sample text and params; the NDJSON log is always written. At the end it
prints where everything went and the command that views each sink.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import codex_ml  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def build_parser() -> argparse.ArgumentParser:
    """The tool's flags: the shared tracking flags plus the job's own."""
    from codex_ml.tracking.flags import add_tracking_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: 300, about 10 s on 2 CPU cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_tracking_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the demo job, return the exit code."""
    from codex_ml.errors import print_error, user_errors
    from codex_ml.tracking.flags import tracking_config_from

    args = build_parser().parse_args(argv)
    if args.steps < 1:
        return print_error(f"--steps must be at least 1, got {args.steps}")
    with user_errors():  # every check (flag ranges, sink names) runs before anything is written
        tracking = tracking_config_from(args)
        from codex_ml.cli.demo_command import run_demo

        run_demo(tracking, steps=args.steps, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
