"""16 runs, each its own process, log into the team server at the same time, into one experiment
that none of them finds at start (so they race to create it): every point of every run arrives
exactly once, and no run reports a monitoring error.

The 16 processes are forked from one that has already imported codex_ml and mlflow: each is
a separate process with its own run, sink thread and HTTP connections (nothing is opened before
the fork), but they do not each spend seconds importing mlflow on a 2-core CI machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from team_helpers import exactly_once, mlflow_state, step_counts

RUNS = 16
STEPS = 60
KEYS = [f"train/k{i}" for i in range(4)]

FORKED_RUNS = textwrap.dedent(
    """
    import json, os, sys, time
    import mlflow.entities, mlflow.tracking  # imported once, before the fork; no connection is opened
    from codex_ml.tracking import start_run

    uri, root, experiment, runs, steps, keys = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
    children = []
    for index in range(runs):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                run = start_run(f"run-{index:02d}", output_root=root, enable_mlflow=True, mlflow_tracking_uri=uri,
                                mlflow_experiment=experiment, flush_interval=0.05, close_timeout=120)
                for step in range(steps):
                    run.log_metrics({f"train/k{k}": index + step / 100 + k for k in range(keys)}, step=step)
                    time.sleep(0.01)
                report = run.close()
                status = 0 if report.complete else 3
            finally:
                os._exit(status)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    print(json.dumps(codes))
    """
)


def test_sixteen_processes_log_into_one_server(tmp_path: Path, team_server) -> None:
    done = subprocess.run([sys.executable, "-c", FORKED_RUNS, team_server.uri, str(tmp_path), "concurrent",
                           str(RUNS), str(STEPS), str(len(KEYS))],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The last line (MLflow prints "View run ..." lines of its own before it).
    assert json.loads(done.stdout.splitlines()[-1]) == [0] * RUNS, done.stderr  # every run closed complete
    assert "[monitoring-error]" not in done.stderr, done.stderr

    run_ids = set()
    for index in range(RUNS):
        state = mlflow_state(tmp_path / f"run-{index:02d}")
        assert state["tracking_uri"] == team_server.uri and state["experiment"] == "concurrent"
        run_ids.add(state["run_id"])
        counts = step_counts(team_server.uri, state["run_id"], KEYS)
        assert exactly_once(counts, range(STEPS)) == {}, f"run-{index:02d}"
    assert len(run_ids) == RUNS  # one MLflow run each, all in one experiment
    from mlflow.tracking import MlflowClient

    client = MlflowClient(team_server.uri)
    experiment = client.get_experiment_by_name("concurrent")
    assert {r.info.run_id for r in client.search_runs([experiment.experiment_id], max_results=100)} == run_ids
