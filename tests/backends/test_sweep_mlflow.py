"""A sweep in MLflow: one parent run per sweep, every trial nested under it (``mlflow.parentRunId``).

Real MLflow file stores, read back with MlflowClient; the race is three real processes starting
their trials at the same instant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from codex_ml.backends import mlflow_sweep as ms
from codex_ml.rundir.sweep_dir import SWEEP_LOCK, sweep_lock
from codex_ml.tracking import TrackingConfig, start_run


@pytest.fixture(autouse=True)
def _clean_env(clean_backend_env: None) -> None:
    """No inherited MLflow settings (tests/conftest.py)."""


def _trial(sweep_dir: Path, trial: str, **options: Any):
    config = TrackingConfig(output_root=str(sweep_dir), sweep=sweep_dir.name, trial=trial, enable_mlflow=True,
                            flush_interval=0.05)  # fmt: skip
    return start_run(trial, config=config, **options)


def _client(sweep_dir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=(sweep_dir / "mlruns").resolve().as_uri())


def _parents(client: MlflowClient) -> list[Any]:
    experiment = client.get_experiment_by_name("codex_ml")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ms.PARENT_TAG}` = 'true'")


def _children(client: MlflowClient, parent_id: str) -> list[Any]:
    experiment = client.get_experiment_by_name("codex_ml")
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return sorted(found, key=lambda r: r.info.run_name)


def _mlflow_state(run) -> dict[str, Any]:
    return json.loads(run.paths.run_file.read_text())["backends"]["mlflow"]


def test_trials_nest_under_one_parent_in_the_sweeps_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    sweep_dir = tmp_path / "sweeps" / "lr"
    for index, lr in enumerate((1e-3, 3e-3)):
        with _trial(sweep_dir, f"trial-{index}", params={"training": {"lr": lr}}) as run:
            run.log_metrics({"val/loss": 2.0 - index}, step=0)
        assert run.close_report.complete, run.close_report
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == "true"  # unchanged: a file store is opted into
    # One store for the sweep, none inside the trials.
    assert (sweep_dir / "mlruns").is_dir()
    assert not (sweep_dir / "trial-0" / "mlruns").exists() and not (sweep_dir / "trial-1" / "mlruns").exists()

    client = _client(sweep_dir)
    (parent,) = _parents(client)
    assert parent.info.run_name == "lr" and parent.data.tags[ms.SWEEP_TAG] == "lr"
    assert parent.info.status == "FINISHED"  # the last trial to close ended it
    children = _children(client, parent.info.run_id)
    assert [c.info.run_name for c in children] == ["trial-0", "trial-1"]
    assert [c.data.params["training.lr"] for c in children] == ["0.001", "0.003"]
    assert [c.data.metrics["val/loss"] for c in children] == [2.0, 1.0]
    for child in children:
        trial = child.info.run_name
        assert child.data.tags[ms.SWEEP_TAG] == "lr" and child.data.tags[ms.TRIAL_TAG] == trial
        assert child.data.tags["sweep"] == "lr" and child.data.tags["trial"] == trial  # the run's own tags
        state = json.loads((sweep_dir / trial / "run.json").read_text())
        assert state["sweep"] == "lr" and state["trial"] == trial
        assert state["backends"]["mlflow"]["run_id"] == child.info.run_id
        assert state["backends"]["mlflow"]["parent_run_id"] == parent.info.run_id
        assert json.loads((sweep_dir / trial / "tags.json").read_text()) == {"sweep": "lr", "trial": trial}
    saved = json.loads((sweep_dir / "sweep.json").read_text())["mlflow"]
    assert saved["parent_run_id"] == parent.info.run_id and saved["sweep"] == "lr"


def test_parent_runs_while_a_trial_runs_and_a_lost_sweep_file_finds_it_again(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "s"
    with _trial(sweep_dir, "a") as run:
        run.log_metrics({"x": 1.0}, step=0)
        run.flush()
        _wait_for(lambda: (sweep_dir / "sweep.json").exists())
        (parent,) = _parents(_client(sweep_dir))
        assert parent.info.status == "RUNNING"
    assert _client(sweep_dir).get_run(parent.info.run_id).info.status == "FINISHED"

    (sweep_dir / "sweep.json").unlink()  # found again by its tags, not made twice
    with _trial(sweep_dir, "b") as run:
        run.log_metrics({"x": 2.0}, step=0)
    client = _client(sweep_dir)
    assert [p.info.run_id for p in _parents(client)] == [parent.info.run_id]
    assert [c.info.run_name for c in _children(client, parent.info.run_id)] == ["a", "b"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_resume_keeps_the_same_nested_child(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "r"
    run = _trial(sweep_dir, "t0")
    run.log_metrics({"val/loss": 3.0}, step=0)
    run.close("KILLED")
    first = _mlflow_state(run)["run_id"]

    with _trial(sweep_dir, "t0", resume=True) as run:
        run.log_metrics({"val/loss": 2.5}, step=1)
    assert _mlflow_state(run)["run_id"] == first
    client = _client(sweep_dir)
    (parent,) = _parents(client)
    (child,) = _children(client, parent.info.run_id)
    assert child.info.run_id == first and child.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(first, "val/loss")] == [(0, 3.0), (1, 2.5)]
    assert parent.info.status == "FINISHED"


def test_an_explicit_sqlite_store_nests_the_trials_too(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweeps" / "sq"
    for trial in ("a", "b"):
        with _trial(sweep_dir, trial, mlflow_tracking_uri=uri) as run:
            run.log_metrics({"val/loss": 1.0}, step=0)
        assert _mlflow_state(run)["tracking_uri"] == uri
    assert not (sweep_dir / "mlruns").exists()  # the store is where the URI says
    client = MlflowClient(tracking_uri=uri)
    (parent,) = _parents(client)
    assert [c.info.run_name for c in _children(client, parent.info.run_id)] == ["a", "b"]
    assert parent.info.status == "FINISHED"


_RACER = """
import sys
from pathlib import Path
from codex_ml.tracking import TrackingConfig, start_run
sweep_dir, trial = Path(sys.argv[1]), sys.argv[2]
config = TrackingConfig(output_root=str(sweep_dir), sweep=sweep_dir.name, trial=trial, enable_mlflow=True,
                        flush_interval=0.05)
with start_run(trial, config=config) as run:
    run.log_metrics({"val/loss": 1.0}, step=0)
assert run.close_report.complete, run.close_report
"""


def test_trials_started_together_in_three_processes_share_one_parent(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The test holds the sweep's lock while three trial processes start: none may create anything in the
    store meanwhile, and once it lets go, the three (all waiting on the lock, so racing) make one parent."""
    sweep_dir = tmp_path / "sweeps" / "race"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with sweep_lock(sweep_dir):
        procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(sweep_dir), f"t{i}"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(3)]  # fmt: skip
        # Until the kernel lists all three MLflow sinks as waiting for the lock (or one of them ends).
        _wait_for(lambda: _lock_waiters(sweep_dir / SWEEP_LOCK) == 3 or any(p.poll() is not None for p in procs),
                  timeout=90)  # fmt: skip
        assert not list(sweep_dir.glob("mlruns/*/*/meta.yaml")), "a trial created an MLflow run without the lock"
        assert all(proc.poll() is None for proc in procs)
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the racers opted in; this process reads the store
    client = _client(sweep_dir)
    assert [e.name for e in client.search_experiments()].count("codex_ml") == 1
    (parent,) = _parents(client)
    assert [c.info.run_name for c in _children(client, parent.info.run_id)] == ["t0", "t1", "t2"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def _lock_waiters(path: Path) -> int:
    """How many processes wait for an flock on ``path`` (Linux lists blocked requests in /proc/locks as ``->``)."""
    inode = path.stat().st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and "FLOCK" in line and line.split()[-3].endswith(f":{inode}"))


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
