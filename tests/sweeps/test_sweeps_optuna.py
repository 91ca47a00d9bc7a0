"""hydra/sweeper=optuna: a real 4-trial study with one trial pruned, killed (SIGKILL) mid-sweep and resumed.

The grid sampler makes the four trials exactly the four learning rates, in some order; the
threshold pruner prunes whichever trial's val loss is still above 4.0 at its first eval (step 5):
only lr=1e-5 (the untrained model's loss is about 4.2; the others are below 3.9 by then). So the
outcome does not depend on the order, and the kill can wait for any trial that trains on.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from sweep_helpers import FAST, clean_env, cli, metric_points, run_cli, run_json

SWEEP = "lr"
ARGS = ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.upper=4.0", "hydra.sweeper.n_trials=4", f"sweep.name={SWEEP}", *FAST,
        "training.max_steps=30", "training.min_lr=1e-6", "training.lr=choice(1e-5,3e-3,1e-2,5e-3)"]
EVALS = [5, 10, 15, 20, 25, 30]


def _training_trial(sweep: Path) -> Path | None:
    """A trial after the first, still RUNNING, its newest checkpoint past its first eval (so not the pruned one)."""
    for run in sorted(sweep.glob("trial-*"))[1:]:
        if not (run / "run.json").is_file() or run_json(run).get("status") != "RUNNING":
            continue
        saved = [int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt")]
        if saved and 10 <= max(saved) <= 20:  # at least 10 of its 30 steps to go: the kill lands mid-trial
            return run
    return None


def _kill_mid_trial(tmp_path: Path) -> Path:
    """Start the sweep, SIGKILL it while a trial trains past a checkpoint; return that trial."""
    proc = subprocess.Popen(cli(*ARGS), cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while (victim := _training_trial(tmp_path / "sweeps" / SWEEP)) is None:
            assert proc.poll() is None, f"the sweep ended before the kill: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no trial reached a checkpoint in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    return victim


def test_optuna_sweep_prunes_one_trial_and_resumes_after_kill(tmp_path: Path) -> None:
    import optuna

    sweep = tmp_path / "sweeps" / SWEEP
    victim = _kill_mid_trial(tmp_path)
    assert run_json(victim)["status"] == "RUNNING"  # SIGKILL: nothing closed it
    finished = {p: (p / "metrics.ndjson").stat().st_mtime_ns for p in sweep.glob("trial-*")
                if run_json(p).get("status") == "FINISHED"}
    assert finished  # at least trial 0 finished before the kill

    done = run_cli(tmp_path, *ARGS)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = re.search(rf"\[sweep\] {victim.name}: interrupted before, resuming from its checkpoint of step (\d+)",
                        done.stderr)
    assert resumed and int(resumed.group(1)) >= 10, done.stderr[-4000:]
    for run, stamp in finished.items():  # finished trials: not trained again, not even opened
        assert (run / "metrics.ndjson").stat().st_mtime_ns == stamp and len(run_json(run)["sessions"]) == 1
    state = run_json(victim)
    assert (state["status"], len(state["sessions"])) == ("FINISHED", 2)
    steps = [s for s, _ in metric_points(victim, "train/loss")]
    assert steps == list(range(1, 31))  # every step once, across the kill

    study = optuna.load_study(study_name=SWEEP, storage=f"sqlite:///{sweep}/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == [0, 1, 2, 3]  # the killed trial was resumed, not replaced
    states = {t.params["training.lr"]: t.state for t in trials}
    TS = optuna.trial.TrialState
    assert states == {1e-5: TS.PRUNED, 3e-3: TS.COMPLETE, 1e-2: TS.COMPLETE, 5e-3: TS.COMPLETE}
    for t in trials:
        run = sweep / f"trial-{t.number:03d}"
        assert run_json(run)["status"] == "FINISHED"  # a pruned trial's run ends cleanly too
        losses = dict(metric_points(run, "val/loss"))
        if t.state == TS.PRUNED:
            assert list(t.intermediate_values) == [5] and losses[5] > 4.0
            assert '"sweep.pruned": "5"' in (run / "tags.json").read_text()
        else:  # every eval reported (the resumed trial's too), the value = the run's best val loss
            assert sorted(t.intermediate_values) == EVALS
            assert t.value == min(losses.values())
    assert (sweep / "optimization_results.yaml").is_file()
