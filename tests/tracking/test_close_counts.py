"""close() with a timeout far too short for the backlog: the sinks are stopped (nothing is
written to TensorBoard or W&B after close returns) and the per-sink ``delivered`` counts in
summary.json and the CloseReport are exactly what each backend's own reader finds."""

from __future__ import annotations

import json
import time
from pathlib import Path

from codex_ml.tracking import start_run
from codex_ml.backends.wandb import find_run_files, read_history

POINTS = 120_000
CLOSE_TIMEOUT = 0.5


def _wait_for_backend(run, name: str, timeout: float = 60.0) -> None:
    """Wait until the sink has started (it records its state in run.json)."""
    deadline = time.monotonic() + timeout
    while name not in json.loads(run.paths.run_file.read_text()).get("backends", {}):
        assert time.monotonic() < deadline, f"the {name} sink never started"
        time.sleep(0.05)


def _sizes(paths: list[Path]) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in paths}


def _tensorboard_points(run_dir: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return len(accumulator.Scalars("loss"))


def test_short_close_timeout_counts_what_the_backends_hold(tmp_path: Path) -> None:
    run = start_run("short-close", output_root=tmp_path, flush_interval=0.05, enable_tensorboard=True,
                    enable_wandb=True)  # fmt: skip
    _wait_for_backend(run, "wandb")  # W&B is writing (not still starting) when close gives up
    for step in range(POINTS):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    began = time.monotonic()
    report = run.close(timeout=CLOSE_TIMEOUT)
    closing = time.monotonic() - began

    files = list((run.paths.root / "tensorboard").iterdir()) + find_run_files(run.paths.root)
    at_close = _sizes(files)
    time.sleep(1.0)
    assert _sizes(files) == at_close, "a sink kept writing after close() returned"
    assert closing < CLOSE_TIMEOUT + 5  # a bound on hanging, not a speed target

    summary = json.loads(run.paths.summary.read_text())
    assert summary["sinks"] == report.sinks
    tensorboard, wandb = report.sinks["tensorboard"], report.sinks["wandb"]
    assert not report.complete and wandb["undelivered"] > 0  # the timeout really cut W&B short
    (wandb_file,) = find_run_files(run.paths.root)
    assert wandb["delivered"] == sum("loss" in row for row in read_history(wandb_file))
    assert tensorboard["delivered"] == _tensorboard_points(run.paths.root)
    for stats in (tensorboard, wandb):
        assert stats["delivered"] + stats["undelivered"] + stats["dropped"] == POINTS
