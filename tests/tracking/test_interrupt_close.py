"""Ctrl-C while close() waits on a slow sink: the run still ends KILLED with run.json and
summary.json written, the sinks that can still hear it are told KILLED, and no traceback.

Each case is a real Python process sent real SIGINTs while it is inside close().
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
SLOW_S = 60  # the stuck sink's write; close must not wait for it after the second Ctrl-C

SCRIPT = """
import os, sys, time
from pathlib import Path
from codex_ml.tracking import Sink, start_run

class Stuck(Sink):
    name = "stuck"
    def write_metrics(self, points):
        time.sleep(%(slow)d)

class Listener(Sink):
    # A sink that is not stuck: it must hear the final status.
    name = "listener"
    def close(self, status):
        Path(sys.argv[1], "listener-status").write_text(status)

run = start_run("slow", output_root=sys.argv[1], flush_interval=0.02, sinks=[Stuck(), Listener()], **%(options)s)
for step in range(10):
    run.log_metrics({"loss": float(step)}, step=step)
run.flush()
while any(sink["delivered"] < 10 for name, sink in run.health()["sinks"].items() if name != "stuck"):
    time.sleep(0.05)  # every sink but the stuck one is up and has the records
%(body)s
print("after close", flush=True)
"""

PLAIN_CLOSE = """
print("closing", flush=True)
run.close()
"""

WITH_BLOCK = """
try:
    with run:
        print("closing", flush=True)  # Ctrl-C #1 lands in the training below, #2 in close()
        time.sleep(30)
except KeyboardInterrupt:
    pass
"""


def _start(tmp_path: Path, body: str, options: str = "{}") -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT % {"slow": SLOW_S, "body": body, "options": options}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(SRC), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt(process: subprocess.Popen[str], times: int, gap: float = 0.5) -> tuple[str, str, float]:
    line = process.stdout.readline()
    assert "closing" in line, process.communicate(timeout=30)[1]
    began = time.monotonic()
    for _ in range(times):
        time.sleep(gap)  # well inside close(): the stuck sink holds it for a minute
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=45)
    return line + out, err, time.monotonic() - began


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _assert_killed_and_consistent(tmp_path: Path, listener_heard: str = "KILLED") -> None:
    run_dir = tmp_path / "slow"
    run, summary = _load(run_dir / "run.json"), _load(run_dir / "summary.json")
    assert run["status"] == "KILLED" and summary["status"] == "KILLED"
    assert summary["last_step"] == 9 and summary["records"] == 10
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.ndjson").read_text().splitlines()] == list(range(10))
    assert summary["sinks"]["listener"]["delivered"] == 10
    assert (tmp_path / "listener-status").read_text() == listener_heard
    assert (run_dir / "run.lock").read_text() == ""  # released: the run can be resumed


def test_two_ctrl_c_during_close_end_the_run_killed_without_a_traceback(tmp_path: Path) -> None:
    """close() waits on a sink stuck in a write; SIGINT twice: the process ends at once, dies of
    SIGINT (exit status 130 in a shell), prints no traceback, and leaves every file KILLED."""
    process = _start(tmp_path, PLAIN_CLOSE)
    out, err, elapsed = _interrupt(process, 2)
    assert process.returncode == -signal.SIGINT, err
    assert "Traceback" not in err, err
    assert elapsed < SLOW_S / 3, elapsed
    # The listener had closed (FINISHED) before the first Ctrl-C; the stuck sink never closes.
    _assert_killed_and_consistent(tmp_path, listener_heard="FINISHED")
    assert "after close" not in out  # Ctrl-C stops the program, as it would have anywhere else
    assert err.count("interrupted while closing: not waiting for the sinks") == 1, err


def test_ctrl_c_in_training_then_in_close_ends_killed(tmp_path: Path) -> None:
    """The usual sequence: Ctrl-C stops training (the with-block closes the run KILLED), a second
    Ctrl-C stops close() waiting for the stuck sink. Also with MLflow: its run ends KILLED too."""
    process = _start(tmp_path, WITH_BLOCK, options="{'enable_mlflow': True}")
    out, err, elapsed = _interrupt(process, 2, gap=1.5)
    assert process.returncode == -signal.SIGINT, err
    assert "Traceback" not in err, err
    assert elapsed < 15, elapsed  # not the 30 s close timeout
    _assert_killed_and_consistent(tmp_path)
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    backend = _load(tmp_path / "slow" / "run.json")["backends"]["mlflow"]
    prepare_environment(backend["tracking_uri"])  # the local file store needs its opt-in
    client = MlflowClient(tracking_uri=backend["tracking_uri"])
    assert client.get_run(backend["run_id"]).info.status == "KILLED"


def test_one_ctrl_c_during_close_is_enough(tmp_path: Path) -> None:
    """A single Ctrl-C while close() waits stops the waiting too (the first one of the usual
    sequence was spent stopping training); the run ends KILLED, the process dies of SIGINT."""
    process = _start(tmp_path, PLAIN_CLOSE)
    out, err, elapsed = _interrupt(process, 1)
    assert process.returncode == -signal.SIGINT, err
    assert "Traceback" not in err and "after close" not in out, err
    assert elapsed < SLOW_S / 3, elapsed
    _assert_killed_and_consistent(tmp_path, listener_heard="FINISHED")


def test_ctrl_c_during_close_in_an_interactive_session_raises_instead(tmp_path: Path) -> None:
    """In a REPL or notebook Ctrl-C must not kill the interpreter: close() ends the run KILLED
    and raises KeyboardInterrupt to the prompt."""
    body = PLAIN_CLOSE.replace("run.close()", "sys.ps1 = '>>> '  # what an interactive interpreter sets\n"
                                             "try:\n    run.close()\nexcept KeyboardInterrupt:\n"
                                             "    print('back at the prompt', flush=True)")
    process = _start(tmp_path, body)
    out, err, elapsed = _interrupt(process, 1)
    assert process.returncode == 0, err
    assert "back at the prompt" in out and "after close" in out and "Traceback" not in err, (out, err)
    _assert_killed_and_consistent(tmp_path, listener_heard="FINISHED")
