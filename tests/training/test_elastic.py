"""Two "nodes" on this machine: two torchrun launches (c10d rendezvous, gloo, one worker each) train one
run; a worker killed with SIGKILL makes torchrun restart the group, which continues the same run (same
run directory, MLflow run and W&B run) from its last checkpoint with each step once in every sink."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from codex_ml.rundir.reader import ReadReport, iter_records
from codex_ml.training.distributed import DistInfo
from codex_ml.training.elastic import (TORCHRUN_FILE, ElasticLaunch, agent_id, plan_elastic, record_session,
                                      shared_store_warning)
from codex_ml.training.errors import TrainingError
from train_helpers import steps_everywhere
from trainer_helpers import TINY, snapshot

JOB = "job-elastic"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "WANDB_MODE": "offline",
           # A fresh c10d store per rendezvous round: with the shared one (torch's default) a restarted
           # worker can read the dead group's gloo addresses and fail to connect (docs/training.md).
           "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("WANDB_SERVICE", None)  # an in-process W&B service of this pytest process is not the job's
    return env


class Nodes:
    """Two torchrun agents on 127.0.0.1 (each its own session), every process killed in :meth:`kill_all`."""

    def __init__(self, tmp_path: Path, *args: str, job: str = JOB) -> None:
        self.logs = [tmp_path / f"node{n}.log" for n in range(2)]
        port = _free_port()
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={job}",
                   "--max-restarts=1", "--monitor-interval=0.1",
                   "-m", "codex_ml.cli", "train-model", "--no-progress", "--output-root", str(tmp_path / "runs"),
                   *TINY, *args]  # fmt: skip
        self.agents = [subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True) for log in self.logs]
        self.seen: set[int] = set()

    def workers(self) -> dict[int, psutil.Process]:
        """The live workers by global rank."""
        found = {}
        for agent in self.agents:
            try:
                children = psutil.Process(agent.pid).children()
            except psutil.NoSuchProcess:
                continue
            for child in children:
                try:
                    rank = child.environ().get("RANK")
                except psutil.Error:
                    continue
                if rank is not None:
                    found[int(rank)] = child
                    self.seen.add(child.pid)
        return found

    def wait(self, timeout: float = 120) -> list[int]:
        """Both agents' exit codes."""
        deadline = time.monotonic() + timeout
        return [agent.wait(timeout=max(1.0, deadline - time.monotonic())) for agent in self.agents]

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in self.logs)

    def kill_all(self) -> None:
        """SIGKILL the agents, their workers and anything those started (W&B's service)."""
        procs = []
        for agent in self.agents:
            try:
                procs += psutil.Process(agent.pid).children(recursive=True) + [psutil.Process(agent.pid)]
            except psutil.NoSuchProcess:
                pass
        for pid in self.seen:
            try:
                procs += psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
            except psutil.NoSuchProcess:
                pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        for agent in self.agents:
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _steps(path: Path, key: str = "train/loss") -> list[int]:
    return [r["step"] for r in iter_records(path, ReadReport(str(path))) if key in r.get("metrics", {})]


def _assert_mlflow_finished(run: Path) -> None:
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    state = json.loads((run / "run.json").read_text())["backends"]["mlflow"]
    prepare_environment(state["tracking_uri"])
    assert MlflowClient(state["tracking_uri"]).get_run(state["run_id"]).info.status == "FINISHED"


def test_two_nodes_train_one_run_and_only_a_restart_continues_it(tmp_path: Path) -> None:
    """Two launches, one run (named after --rdzv-id), rank 0 writes it. On that finished run a new launch of the
    same job (new agents: every attempt, the restart too) and a plain train-model are refused, the run untouched."""
    steps = 12
    nodes = Nodes(tmp_path, f"training.max_steps={steps}")
    try:
        assert nodes.wait() == [0, 0], nodes.output()
    finally:
        nodes.kill_all()
    run = tmp_path / "runs" / JOB
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [JOB]
    assert _steps(run / "metrics.ndjson") == list(range(1, steps + 1))  # rank 0 alone logs
    assert json.loads((run / "params.json").read_text())["distributed.world_size"] == 2
    made = json.loads((run / TORCHRUN_FILE).read_text())
    assert made["rdzv_id"] == JOB and len(made["agents"]) == 2 and len(made["sessions"]) == 1
    assert made["sessions"][0]["restart_count"] == 0
    before = snapshot(run)
    again = Nodes(tmp_path, f"training.max_steps={steps}")
    try:
        codes = again.wait()
    finally:
        again.kill_all()
    assert codes != [0, 0] and again.output().count("error: a run already exists") >= 2, again.output()
    plain = subprocess.run([sys.executable, "-m", "codex_ml.cli", "train-model", "--no-progress", "--output-root",
                            str(tmp_path / "runs"), "--run-name", JOB, *TINY, f"training.max_steps={steps}"],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 2 and "a run already exists" in plain.stderr, plain.stderr[-2000:]
    assert snapshot(run) == before


@pytest.mark.parametrize("victim", [0, 1])
def test_kill_one_worker_and_the_restarted_group_continues_the_same_run(tmp_path: Path, victim: int) -> None:
    """SIGKILL rank ``victim``'s worker after a checkpoint and a few more logged steps: torchrun restarts
    both workers (TORCHELASTIC_RESTART_COUNT > 0), which continue from the checkpoint in the same run
    directory, MLflow run and W&B run; every step once in NDJSON, TensorBoard, MLflow and W&B; FINISHED."""
    steps = 60
    nodes = Nodes(tmp_path, "--run-name", "el", "--enable-tensorboard", "--mlflow-enable", "--enable-wandb",
                  f"training.max_steps={steps}", "training.eval_interval=10", "training.histogram_interval=10",
                  "training.sample_interval=20", "tracking.flush_interval=0.05",
                  "training.fault=slow_data@1:0.03s")  # fmt: skip  (paces steps so the kill lands mid-run)
    run = tmp_path / "runs" / "el"
    try:
        backends = _wait_for_checkpoint_and_more(nodes, run)
        first = nodes.workers()
        first[victim].send_signal(signal.SIGKILL)
        assert nodes.wait() == [0, 0], nodes.output()
    finally:
        nodes.kill_all()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["el"]
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "FINISHED" and len(state["sessions"]) == 2, nodes.output()
    for sink in ("mlflow", "wandb"):
        assert state["backends"][sink]["run_id"] == backends[sink]["run_id"], sink
    sessions = json.loads((run / TORCHRUN_FILE).read_text())["sessions"]
    assert [s["restart_count"] > 0 for s in sessions] == [False, True]
    assert "continuing" in nodes.output() and "in the same run" in nodes.output()
    expected = Counter(range(1, steps + 1))
    found = steps_everywhere(run)
    _assert_mlflow_finished(run)
    assert found == {sink: expected for sink in found}, nodes.output()


def _wait_for_checkpoint_and_more(nodes: Nodes, run: Path, timeout: float = 90) -> dict[str, Any]:
    """Wait until a checkpoint exists, two steps after it are logged and the MLflow and W&B runs exist;
    return run.json's backends."""
    from codex_ml.training.checkpoints import list_step_checkpoints

    deadline = time.monotonic() + timeout
    while True:
        assert all(a.poll() is None for a in nodes.agents) and time.monotonic() < deadline, nodes.output()
        saved = list_step_checkpoints(run / "checkpoints")
        backends = json.loads((run / "run.json").read_text()).get("backends", {}) if (run / "run.json").exists() else {}
        logged = _steps(run / "metrics.ndjson") if (run / "metrics.ndjson").exists() else []
        if saved and logged and {"mlflow", "wandb"} <= set(backends) and max(logged) >= saved[-1][0] + 2:
            assert len(nodes.workers()) == 2
            return backends
        time.sleep(0.02)


# -- the decision, without torchrun ---------------------------------------------------------------------------

def test_launch_from_the_environment_and_the_run_name() -> None:
    """Only a worker torchrun may restart is elastic; the run name falls back to the rdzv id, never to 'none'."""
    assert ElasticLaunch.from_env({}) is None
    assert ElasticLaunch.from_env({"TORCHELASTIC_RUN_ID": "j", "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    launch = ElasticLaunch.from_env({"TORCHELASTIC_RUN_ID": "j", "TORCHELASTIC_MAX_RESTARTS": "2",
                                     "TORCHELASTIC_RESTART_COUNT": "1"})
    assert launch == ElasticLaunch("j", 1, 2)
    assert launch.run_name(None) == "j" and launch.run_name("mine") == "mine"
    with pytest.raises(TrainingError, match="--rdzv-id"):
        ElasticLaunch("none", 0, 1).run_name(None)
    # Workers that share torchrun's rendezvous store (torch's default) are told how to get a fresh one per restart.
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in shared_store_warning({"TORCHELASTIC_USE_AGENT_STORE": "True"})
    assert shared_store_warning({"TORCHELASTIC_USE_AGENT_STORE": "False"}) is None


def test_agent_id_is_the_parent_process() -> None:
    """The agent id names this process's parent, with its start time (a reused pid is another agent)."""
    mine = agent_id()
    assert mine == agent_id(os.getppid()) and f":{os.getppid()}:" in mine
    assert mine != agent_id(os.getpid())


def test_only_the_job_that_made_a_run_continues_it(tmp_path: Path) -> None:
    """A run recorded by this job and one of its agents: resume (finished: nothing to do); another rdzv id or
    no shared agent: 'new', which start_run then refuses because the run exists."""
    info = DistInfo()
    launch = ElasticLaunch("job", 1, 1)
    fresh = plan_elastic(launch, str(tmp_path), "r", info)
    assert fresh.action == "new" and fresh.agents == [agent_id()]
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "FAILED"}))
    assert plan_elastic(launch, str(tmp_path), "r", info).action == "new"  # no torchrun.json: not ours
    record_session(fresh, 2)
    assert plan_elastic(launch, str(tmp_path), "r", info).action == "resume"
    assert plan_elastic(ElasticLaunch("other", 1, 1), str(tmp_path), "r", info).action == "new"
    made = json.loads((run / TORCHRUN_FILE).read_text())
    (run / TORCHRUN_FILE).write_text(json.dumps({**made, "agents": ["elsewhere:1:2"]}))
    assert plan_elastic(launch, str(tmp_path), "r", info).action == "new"
    (run / TORCHRUN_FILE).write_text(json.dumps(made))
    (run / "run.json").write_text(json.dumps({"status": "FINISHED"}))
    assert plan_elastic(launch, str(tmp_path), "r", info).action == "finished"


def test_a_restart_after_the_run_finished_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A worker that dies after rank 0 closed the run FINISHED: the restarted group says so and exits 0."""
    from codex_ml.cli.train_command import run_train_model
    from codex_ml.tracking.config import TrackingConfig

    for key, value in {"TORCHELASTIC_RUN_ID": "job", "TORCHELASTIC_MAX_RESTARTS": "1",
                       "TORCHELASTIC_RESTART_COUNT": "1"}.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "done"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "FINISHED"}))
    record_session(plan_elastic(ElasticLaunch("job", 0, 1), str(tmp_path), "done", DistInfo()), 1)
    before = snapshot(tmp_path)
    assert run_train_model(None, TINY, None, TrackingConfig(output_root=str(tmp_path), run_name="done")) is None
    assert "already finished; nothing to train" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
