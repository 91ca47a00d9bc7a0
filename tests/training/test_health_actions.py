"""Health rules inside a real training run: events written live, ``skip`` drops the offending update,
``rollback`` restores the last checkpoint (bounded by training.max_rollbacks), ``stop`` checkpoints and ends
the run FAILED with exit status 3, and the backtest finds the live events."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from codex_ml.health import read_events
from codex_ml.health.backtest import backtest
from codex_ml.training.config import ConfigError
from codex_ml.training.health_guard import HealthStopError
from codex_ml.training.trainer import train
from trainer_helpers import series, tiny_config, tracking_for

QUIET = ["training.eval_interval=100", "training.checkpoint_interval=100", "training.histogram_interval=100",
         "training.sample_interval=100"]  # fmt: skip


def test_a_nan_with_action_log_is_one_live_event_and_the_backtest_agrees(tmp_path: Path) -> None:
    result = train(tiny_config("training.max_steps=8", *QUIET, "training.fault=nan@5"), tracking_for(tmp_path, "log"))
    live = read_events(result.run_dir / "events.ndjson")
    assert ("nonfinite", 5, "train/loss") in [e.key() for e in live]
    assert all(e.action == "log" for e in live)
    # The NaN weights make every later loss NaN: `log` only records (nonfinite fires once per streak).
    assert math.isnan(float(series(result.run_dir, "train/loss")[-1][1]))
    assert sorted(e.key() for e in backtest(result.run_dir)) == sorted(e.key() for e in live)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["health"]["events"] == len(live) and summary["status"] == "FINISHED"


def test_skip_drops_the_nan_update_and_training_goes_on(tmp_path: Path) -> None:
    result = train(tiny_config("training.max_steps=10", *QUIET, "training.fault=nan@5", "health.nonfinite.action=skip"),
                   tracking_for(tmp_path, "skip"))
    losses = {step: float(value) for step, value in series(result.run_dir, "train/loss")}
    assert math.isnan(losses[5])  # the step itself is logged as it was
    assert all(math.isfinite(losses[s]) for s in range(6, 11))  # its update never reached the weights
    skipped = [e for e in read_events(result.run_dir / "events.ndjson") if e.rule == "nonfinite"]
    assert {(e.step, e.metric) for e in skipped} == {(5, "train/loss"), (5, "train/grad_norm")}
    assert all(e.action == "skip" for e in skipped)
    assert "update of step 5 was skipped" in skipped[0].message
    assert math.isfinite(result.final_val_loss)


def test_stop_checkpoints_and_ends_failed(tmp_path: Path) -> None:
    # 400 steps: the stop must come before the end. A tiny step takes a few ms, so 30 of them fit in the flush
    # interval the writer thread needs to see the NaN (a fresh-clone run reached step 30 first).
    config = tiny_config("training.max_steps=400", *QUIET, "training.fault=nan@4", "health.nonfinite.action=stop")
    with pytest.raises(HealthStopError) as raised:
        train(config, tracking_for(tmp_path, "stop"))
    assert "'nonfinite' stopped the run" in str(raised.value) and "--resume" in str(raised.value)
    run_dir = tmp_path / "stop"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "FAILED"
    steps = [s for s, _ in series(run_dir, "train/loss")]
    # The writer thread sees the NaN within a flush interval: a few steps later (more on a busy machine).
    assert 4 in steps and max(steps) < 400
    assert list((run_dir / "checkpoints").glob("*.pt")), "a stopped run keeps a checkpoint to resume from"


def test_stop_from_the_command_line_is_one_line_and_exit_3(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codex_ml.cli", "train-model", "--output-root", str(tmp_path), "--run-name", "cli",
         *[f"{o}" for o in ("model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
                            "training.batch_size=4", "training.max_steps=20", "training.progress=false", *QUIET,
                            "training.fault=nan@3", "health.nonfinite.action=stop")]],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nonfinite" in errors[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(("override", "needle"), [
    ("health.spike.threshold=abc", "health.spike.threshold"),
    ("training.max_rollbacks=-1", "max_rollbacks"),
    ("health.nosuchrule.action=log", "nosuchrule"),
])
def test_bad_health_settings_fail_at_config_load(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        tiny_config(override)
    assert needle in str(raised.value)


def test_rollback_restores_the_last_checkpoint_and_skips_the_window(tmp_path: Path) -> None:
    config = tiny_config("training.max_steps=20", "training.checkpoint_interval=5", "training.eval_interval=100",
                         "training.histogram_interval=100", "training.sample_interval=100",
                         "training.fault=nan@12", "health.nonfinite.action=rollback")
    result = train(config, tracking_for(tmp_path, "rollback"))
    events = read_events(result.run_dir / "events.ndjson")
    [rewind] = [e for e in events if e.rule == "rewind"]
    assert (rewind.step, rewind.value, rewind.action) == (10, 12.0, "rollback")
    assert {e.step for e in events if e.rule == "nonfinite"} == {12} and all(
        e.action == "rollback" for e in events if e.rule == "nonfinite")
    # NDJSON keeps everything: steps 11 and 12 were logged twice (the NaN one first), then 13..20 once.
    steps = [s for s, _ in series(result.run_dir, "train/loss")]
    assert steps.count(11) == 2 and steps.count(12) == 2 and steps[-1] == 20
    losses = [float(v) for s, v in series(result.run_dir, "train/loss")]
    assert math.isnan(losses[steps.index(12)]) and all(math.isfinite(v) for v in losses[steps.index(12) + 1:])
    assert result.finished and math.isfinite(result.final_val_loss)


def test_rollbacks_are_bounded_then_the_run_stops(tmp_path: Path) -> None:
    config = tiny_config("training.max_steps=30", "training.checkpoint_interval=5", *QUIET[:1], *QUIET[2:],
                         "training.fault=nan@12-30", "health.nonfinite.action=rollback", "training.max_rollbacks=2")
    with pytest.raises(HealthStopError) as raised:
        train(config, tracking_for(tmp_path, "bounded"))
    assert "after 2 rollbacks" in str(raised.value)
    rewinds = [e for e in read_events(tmp_path / "bounded" / "events.ndjson") if e.rule == "rewind"]
    assert len(rewinds) == 2
    assert json.loads((tmp_path / "bounded" / "run.json").read_text())["status"] == "FAILED"
