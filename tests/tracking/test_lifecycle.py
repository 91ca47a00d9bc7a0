"""How runs end when the process does: SIGTERM, an uncaught exception, exiting without
close(), SIGKILL. Each case runs a real Python process and then reads its run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from codex_ml.rundir.reader import ReadReport, read_metrics

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 60  # only turns a hang into a failure


def run_script(tmp_path: Path, body: str, timeout: float = TIMEOUT_S) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``body`` (dedented) in a fresh interpreter with ``sys.argv[1]`` = the output root."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )
    return done, time.monotonic() - began


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def steps(run_dir: Path) -> list[int]:
    report = ReadReport(str(run_dir / "metrics.ndjson"))
    records = read_metrics(run_dir / "metrics.ndjson", report)
    assert report.bad_lines == []
    return [r["step"] for r in records]


def test_sigterm_closes_run_killed_and_keeps_exit_status(tmp_path: Path) -> None:
    """SIGTERM flushes and closes the run KILLED, then the process still dies of SIGTERM."""
    done, _ = run_script(
        tmp_path,
        """
        import os, signal, sys, time
        from codex_ml.tracking import start_run
        run = start_run("term", output_root=sys.argv[1], flush_interval=5.0)
        for step in range(25):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print("survived SIGTERM")
        """,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "survived" not in done.stdout
    run_dir = tmp_path / "runs" / "term"
    assert load(run_dir / "summary.json")["status"] == "KILLED"
    assert load(run_dir / "run.json")["status"] == "KILLED"
    assert steps(run_dir) == list(range(25))


SIGTERM_DURING_CLOSE = """
import os, signal, sys, threading, time
from codex_ml.tracking import Sink, start_run

class SlowClose(Sink):
    name = "slowclose"
    def close(self, status):
        time.sleep(1.0)

run = start_run("midclose", output_root=sys.argv[1], flush_interval=0.05, sinks=[SlowClose()])
for step in range(10):
    run.log_metrics({"loss": float(step)}, step=step)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
run.close()
time.sleep(30)
print("survived SIGTERM")
"""


def test_sigterm_during_close_does_not_hang(tmp_path: Path) -> None:
    """A SIGTERM that arrives while the main thread is inside close() (here: waiting on a
    sink's slow close) must not deadlock: the process dies of SIGTERM promptly with every
    record on disk."""
    done, elapsed = run_script(tmp_path, SIGTERM_DURING_CLOSE, timeout=20)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "survived" not in done.stdout
    assert elapsed < 15
    assert steps(tmp_path / "runs" / "midclose") == list(range(10))


def test_sigterm_during_close_still_records_a_final_status(tmp_path: Path) -> None:
    """The run being closed when SIGTERM arrives still ends with a final status and a summary."""
    done, _ = run_script(tmp_path, SIGTERM_DURING_CLOSE, timeout=20)
    assert done.returncode == -signal.SIGTERM, done.stderr
    run_dir = tmp_path / "runs" / "midclose"
    assert load(run_dir / "run.json")["status"] in ("FINISHED", "KILLED")
    assert load(run_dir / "summary.json")["status"] in ("FINISHED", "KILLED")


def test_uncaught_exception_closes_run_failed(tmp_path: Path) -> None:
    """A script that dies of an uncaught exception (run never closed) leaves the run FAILED
    with everything it logged."""
    done, _ = run_script(
        tmp_path,
        """
        import sys
        from codex_ml.tracking import start_run
        run = start_run("crash", output_root=sys.argv[1], flush_interval=5.0)
        for step in range(10):
            run.log_metrics({"loss": float(step)}, step=step)
        raise RuntimeError("training diverged")
        """,
    )
    assert done.returncode == 1
    assert "RuntimeError: training diverged" in done.stderr
    run_dir = tmp_path / "runs" / "crash"
    assert load(run_dir / "summary.json")["status"] == "FAILED"
    assert load(run_dir / "run.json")["status"] == "FAILED"
    assert steps(run_dir) == list(range(10))


def test_exit_without_close_finishes_promptly(tmp_path: Path) -> None:
    """A script that ends without close() exits promptly, and its run is closed FINISHED with
    every record (flush_interval is long, so only the exit hook can have written them)."""
    done, elapsed = run_script(
        tmp_path,
        """
        import sys
        from codex_ml.tracking import start_run
        run = start_run("noclose", output_root=sys.argv[1], flush_interval=30.0)
        for step in range(50):
            run.log_metrics({"loss": float(step)}, step=step)
        run.log_text("sample", "last words", step=49)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert elapsed < 20, f"exit took {elapsed:.1f}s"
    run_dir = tmp_path / "runs" / "noclose"
    summary = load(run_dir / "summary.json")
    assert summary["status"] == "FINISHED" and summary["last_step"] == 49
    assert load(run_dir / "run.json")["status"] == "FINISHED"
    assert steps(run_dir) == list(range(50))
    assert (run_dir / "text.ndjson").read_text().count("last words") == 1



def test_exit_without_close_when_run_is_not_referenced(tmp_path: Path) -> None:
    """A run started inside a function and never closed is still closed FINISHED at exit with
    all its records (the tracker must keep open runs alive, not the caller)."""
    done, _ = run_script(
        tmp_path,
        """
        import gc, sys
        from codex_ml.tracking import start_run

        def train():
            run = start_run("local", output_root=sys.argv[1], flush_interval=30.0)
            for step in range(20):
                run.log_metrics({"loss": float(step)}, step=step)

        train()
        gc.collect()
        """,
    )
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "local"
    assert load(run_dir / "run.json")["status"] == "FINISHED"
    assert steps(run_dir) == list(range(20))


def test_sigkill_keeps_records_logged_before_a_flush_interval(tmp_path: Path) -> None:
    """After SIGKILL (no exit hooks at all), every record logged more than a few flush
    intervals before the kill is on disk and readable; the run is left RUNNING, unsummarised."""
    done, _ = run_script(
        tmp_path,
        """
        import os, signal, sys, time
        from codex_ml.tracking import start_run
        flush_interval = 0.1
        run = start_run("sigkill", output_root=sys.argv[1], flush_interval=flush_interval)
        for step in range(30):
            run.log_metrics({"loss": float(step)}, step=step)
        run.log_text("sample", "before the kill", step=29)
        time.sleep(flush_interval * 3)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert done.returncode == -signal.SIGKILL
    run_dir = tmp_path / "runs" / "sigkill"
    assert steps(run_dir) == list(range(30))
    assert "before the kill" in (run_dir / "text.ndjson").read_text()
    assert load(run_dir / "run.json")["status"] == "RUNNING"
    assert not (run_dir / "summary.json").exists()


def test_sigterm_marks_the_mlflow_run_killed(tmp_path: Path) -> None:
    """SIGTERM during training: the MLflow run ends KILLED with every point, exit status kept."""
    done, _ = run_script(
        tmp_path,
        """
        import json, os, signal, sys, time
        from codex_ml.tracking import start_run
        run = start_run("term-mlflow", output_root=sys.argv[1], enable_mlflow=True, flush_interval=5.0)
        for step in range(25):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        while "mlflow" not in json.loads(run.paths.run_file.read_text()).get("backends", {}):
            time.sleep(0.05)  # the MLflow run exists: this is mid-training
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        """,
        timeout=120,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    from mlflow.tracking import MlflowClient

    from codex_ml.backends.mlflow_utils import prepare_environment

    state = load(tmp_path / "runs" / "term-mlflow" / "run.json")["backends"]["mlflow"]
    prepare_environment(state["tracking_uri"])
    client = MlflowClient(state["tracking_uri"])
    assert client.get_run(state["run_id"]).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(state["run_id"], "loss")] == list(range(25))
