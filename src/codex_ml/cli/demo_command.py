"""The demo job: a short real training run that logs to every enabled sink.

Shared by ``tools/monitoring_integrate.py`` (argparse) and ``codex-ml demo`` (Typer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from codex_ml.tracking.config import TrackingConfig
from codex_ml.rundir.paths import RunPaths, validate_run_name
from codex_ml.tracking.viewing import describe_outputs

DEFAULT_RUN_NAME = "demo"


def archive_existing_run(config: TrackingConfig, name: str) -> Path | None:
    """Move an earlier run of the same name aside (``<name>.<timestamp>``) instead of mixing runs.

    The moved run stays whole: its MLflow store's absolute artifact locations and run.json's
    tracking URI are rewritten to the new place (codex_ml.tracking.relocate).
    """
    from codex_ml.tracking.relocate import relocate_run_dir
    from codex_ml.tracking.run_lock import check_not_in_use

    validate_run_name(name)
    old = Path(config.output_root) / name
    if not old.exists():
        return None
    check_not_in_use(old)  # a run another demo is still writing is not moved from under it
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = old.with_name(f"{name}.{stamp}")
    for count in range(1, 1000):  # two demos in one second must not land in (or fail on) one name
        if not target.exists():
            break
        target = old.with_name(f"{name}.{stamp}-{count}")
    before = old.resolve()  # the store names the resolved path (symlinks followed)
    old.rename(target)
    relocate_run_dir(before, target.resolve())
    return target


def run_demo(tracking: TrackingConfig, steps: int = 300, progress: bool = True, health: list[str] = ()) -> dict:
    """Train the demo model on the bundled text with ``tracking``; print where things went.

    ``health``: ``health.<rule>.<key>=value`` settings applied to the default health rules."""
    from codex_ml.health.config import HealthConfig
    from codex_ml.tracking import start_run
    from codex_ml.training.demo import DemoConfig, run_demo_training

    from codex_ml.tracking.builtin_sinks import check_sink_packages

    name = tracking.run_name or DEFAULT_RUN_NAME
    rules = HealthConfig().with_overrides(health)  # a bad setting stops here, before anything moves
    check_sink_packages(tracking)  # before the move: a missing package must leave the earlier run in place
    archived = archive_existing_run(tracking, name)
    if archived is not None:
        print(f"An earlier run '{name}' was moved to {archived}")
    config = DemoConfig(steps=steps)
    with start_run(name, config=tracking, tags={"job": "demo"}, health=rules) as run:
        print(f"Training a {config.model.n_layer}-layer character transformer for {steps} steps; sinks: ndjson"
              + "".join(f", {s}" for s in run.sink_names), file=sys.stderr)
        result = run_demo_training(run, config, progress=progress)
    report = run.close_report
    print(f"val loss {result['initial_val_loss']:.3f} -> {result['final_val_loss']:.3f}; "
          f"{report.records} records logged, closed in {report.seconds:.1f}s")
    for line in describe_outputs(RunPaths(run.paths.root), run.sink_names):
        print(line)
    return result
