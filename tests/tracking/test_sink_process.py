"""The sink process (tracking/sink_host.py, sink_process.py): TensorBoard, MLflow and W&B are
delivered by a companion process, not by the training process; it drains after the trainer is
killed, and losing it costs the trainer nothing but one error line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from codex_ml.tracking import start_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 400

#: A trainer: every sink, STEPS steps, waits until the pipe took them all, says so, then sleeps or closes.
TRAINER = textwrap.dedent('''
    import json, sys, time
    from codex_ml.tracking import start_run
    root, mode, close_timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    run = start_run("r", output_root=root, enable_tensorboard=True, enable_mlflow=True, enable_wandb=True,
                    close_timeout=close_timeout)
    for step in range({steps}):
        run.log_metrics({{"train/loss": 1.0 / (step + 1), "train/lr": 0.001}}, step=step)
    run.flush()
    while any(p._pending for p in run.sink_processes):  # every batch handed to the pipes
        time.sleep(0.01)
    print(json.dumps({{"sink_pids": [p._process.pid for p in run.sink_processes], "heavy": sorted(m for m in ("mlflow", "wandb",
          "tensorboard", "torch") if m in sys.modules)}}), flush=True)
    if mode == "close":
        run.close()
        print(json.dumps({{"report": run.close_report.sinks}}), flush=True)
    else:
        time.sleep(600)
''').format(steps=STEPS)


def _trainer(tmp_path: Path, mode: str, close_timeout: float = 30.0) -> tuple[subprocess.Popen[str], dict]:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path), mode, str(close_timeout)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    first = process.stdout.readline()
    assert first, process.stderr.read()
    return process, json.loads(first)


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # exited; an orphan waits for init to reap it
            return
        time.sleep(0.05)
    raise AssertionError(f"sink process {pid} still alive after {seconds} s")


def _mlflow_steps(run_dir: Path, key: str = "train/loss") -> tuple[list[int], str]:
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    saved = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    prepare_environment(saved["tracking_uri"])  # how codex_ml's own readers open a file store
    client = MlflowClient(saved["tracking_uri"])
    history = client.get_metric_history(saved["run_id"], key)
    return sorted(m.step for m in history), client.get_run(saved["run_id"]).info.status


def _tensorboard_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: list[int] = []
    for event_file in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        steps += [e.step for e in accumulator.Scalars(tag)]
    return sorted(steps)


def test_sinks_are_delivered_by_another_process(tmp_path: Path) -> None:
    trainer, first = _trainer(tmp_path, "close")
    closed = json.loads(trainer.stdout.readline())
    assert trainer.wait(60) == 0, trainer.stderr.read()
    assert first["heavy"] == []  # the trainer never imported a backend
    assert {name: report["delivered"] for name, report in closed["report"].items()} == \
        {"tensorboard": STEPS, "mlflow": STEPS, "wandb": STEPS}
    assert len(first["sink_pids"]) == 3  # one process per sink
    for pid in first["sink_pids"]:
        _wait_gone(pid, 5)  # close() let them exit before returning
    run_dir = tmp_path / "r"
    assert _mlflow_steps(run_dir) == (list(range(STEPS)), "FINISHED")
    assert _tensorboard_steps(run_dir) == list(range(STEPS))


def test_the_sink_processes_run_idle_in_the_trainers_session(tmp_path: Path) -> None:
    trainer, first = _trainer(tmp_path, "sleep")
    try:
        for pid in first["sink_pids"]:
            assert _nice_soon(pid) == 19  # the default sink_process_nice
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # set before its first thread: all of them
            assert os.getpgid(pid) == pid != os.getpgid(trainer.pid)  # the terminal's Ctrl-C does not reach it
            assert os.getsid(pid) == os.getsid(trainer.pid)  # one autogroup: its low priority counts against ours
    finally:
        trainer.kill()
        trainer.wait()


def _nice_soon(pid: int) -> int:
    """The process's nice value once it has set it (its first act, ~0.1 s after it starts)."""
    deadline = time.time() + 10
    while True:
        nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        if nice or time.time() > deadline:
            return nice
        time.sleep(0.05)


def test_after_kill_9_the_sink_process_drains_and_a_resume_waits_for_it(tmp_path: Path) -> None:
    trainer, first = _trainer(tmp_path, "sleep")
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    run_dir = tmp_path / "r"
    # The resume takes the run lock only once the orphaned sink process has let it go.
    with start_run("r", output_root=str(tmp_path), resume=True, backfill_on_resume=False) as run:
        for pid in first["sink_pids"]:
            _wait_gone(pid, 0.5)
        assert run.sink_names == []
    assert _mlflow_steps(run_dir) == (list(range(STEPS)), "KILLED")
    assert _tensorboard_steps(run_dir) == list(range(STEPS))


def test_an_orphan_never_outlives_its_trainer_by_more_than_the_close_timeout(tmp_path: Path) -> None:
    trainer, first = _trainer(tmp_path, "sleep", close_timeout=1.0)
    os.kill(trainer.pid, signal.SIGKILL)  # the sinks are most likely still starting (W&B, MLflow imports)
    trainer.wait()
    for pid in first["sink_pids"]:
        _wait_gone(pid, 1.0 + 1.0)  # the bound, and a second for the interpreter to go


def test_losing_the_sink_process_is_one_error_and_training_goes_on(tmp_path: Path, capfd) -> None:
    run = start_run("lost", output_root=str(tmp_path), enable_tensorboard=True)
    run.log_metrics({"loss": 1.0}, step=0)
    run.flush()
    deadline = time.time() + 30
    (process,) = run.sink_processes
    while process._process is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process._process.pid, signal.SIGKILL)
    time.sleep(0.5)
    for step in range(1, 100):
        run.log_metrics({"loss": 1.0 / step}, step=step)
    report = run.close()
    assert not report.complete
    assert report.sinks["tensorboard"]["disabled"] is True
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1 and errors[0].startswith("[monitoring-error] tensorboard: its sink process exited"), errors
    lines = (tmp_path / "lost" / "metrics.ndjson").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records if "loss" in r.get("metrics", r)] == list(range(100))


def test_sink_process_off_keeps_the_sinks_in_process(tmp_path: Path) -> None:
    with start_run("here", output_root=str(tmp_path), enable_tensorboard=True, sink_process=False) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        assert run.sink_processes == []
        assert run.sink_names == ["tensorboard"]
    assert _tensorboard_steps(tmp_path / "here", "loss") == [0]


@pytest.mark.parametrize("value", [-1, 20, "5", True])
def test_a_bad_nice_value_is_refused(tmp_path: Path, value) -> None:
    from codex_ml.tracking.config import TrackingConfig, TrackingConfigError

    with pytest.raises(TrackingConfigError, match="sink_process_nice"):
        TrackingConfig(sink_process_nice=value)


#: A resumed session with every sink: logs steps 20-29 at once, then closes and says what it imported.
RESUMED = textwrap.dedent('''
    import json, sys
    from codex_ml.tracking import start_run
    run = start_run("gap", output_root=sys.argv[1], resume=True, enable_tensorboard=True, enable_mlflow=True,
                    enable_wandb=True, flush_interval=0.02)
    for step in range(20, 30):  # while the sink processes may still be back-filling
        run.log_metrics({"loss": float(step)}, step=step)
    run.close()
    print(json.dumps(sorted(m for m in ("mlflow", "wandb", "tensorboard") if m in sys.modules)))
''')


def test_a_resume_back_fills_in_the_sink_processes(tmp_path: Path) -> None:
    """Back-fill on resume happens in each sink process before its sink starts, limited to what earlier
    sessions logged: the trainer imports no backend, and each backend holds every step exactly once."""
    every = {"enable_tensorboard": True, "enable_mlflow": True, "enable_wandb": True}
    with start_run("gap", output_root=str(tmp_path), flush_interval=0.02, **every) as run:
        for step in range(10):
            run.log_metrics({"loss": float(step)}, step=step)
    with start_run("gap", output_root=str(tmp_path), resume=True, flush_interval=0.02) as run:  # no sinks
        for step in range(10, 20):
            run.log_metrics({"loss": float(step)}, step=step)
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", RESUMED, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert done.stderr.count("resume: back-filled 10 points") == 3, done.stderr  # TensorBoard, MLflow, W&B
    run_dir = tmp_path / "gap"
    assert _mlflow_steps(run_dir, "loss") == (list(range(30)), "FINISHED")
    assert _tensorboard_steps(run_dir, "loss") == list(range(30))


def test_a_back_fill_still_running_at_the_close_deadline_is_one_error(tmp_path: Path, capfd) -> None:
    """A resume whose back-fill (200,000 points into TensorBoard: seconds) outlasts close_timeout: close() returns
    in time, and the sink that never started counts its record undelivered, with one error line."""
    with start_run("slow", output_root=str(tmp_path), enable_tensorboard=True) as run:
        run.log_metrics({"loss": 0.0}, step=0)
    with start_run("slow", output_root=str(tmp_path), resume=True) as run:  # TensorBoard off: all left to back-fill
        for step in range(1, 200_001):
            run.log_metrics({"loss": 1.0 / step}, step=step)
    capfd.readouterr()
    run = start_run("slow", output_root=str(tmp_path), resume=True, enable_tensorboard=True, close_timeout=0.2)
    run.log_metrics({"loss": 0.5}, step=200_001)
    began = time.time()
    report = run.close()
    assert time.time() - began < 0.2 + 10  # the deadline, the grace and the slack, not the back-fill's length
    assert not report.complete and report.sinks["tensorboard"]["undelivered"] == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1 and errors[0].startswith(
        "[monitoring-error] tensorboard: its resume back-fill was still running at the close deadline, so it never "
        "started; stopped it, 1 records not delivered"), errors
