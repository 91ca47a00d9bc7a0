"""W&B online with an API key but no network at all (a fresh network namespace): close()
keeps its timeout, the failure is reported (a ``[monitoring-error] wandb:`` line before the
program's own summary, counted in summary.json), and the process exits promptly instead of
waiting out W&B's own 90 s timeouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLOSE_TIMEOUT = 2.0
#: Python, W&B's import and its service start take a few seconds on a busy machine.
STARTUP_ALLOWANCE = 15.0

SCRIPT = """
import sys
from codex_ml.tracking import start_run

with start_run("online", output_root=sys.argv[1], enable_wandb=True, flush_interval=0.05,
               close_timeout=float(sys.argv[2])) as run:
    for step in range(20):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
print("SUMMARY", run.close_report, flush=True)
"""


def test_wandb_online_without_network_reports_and_exits_in_bounded_time(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to cut the network off"
    env = {**os.environ, "WANDB_MODE": "online", "WANDB_API_KEY": "0123456789abcdef" * 2 + "01234567",
           "WANDB_SILENT": "true"}  # fmt: skip
    command = [unshare, "--net", sys.executable, "-c", SCRIPT, str(tmp_path), str(CLOSE_TIMEOUT)]
    began = time.monotonic()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"still running after {exc.timeout}s: the exit waited on W&B's network timeouts") from None
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stdout
    assert elapsed < CLOSE_TIMEOUT + STARTUP_ALLOWANCE, f"exit took {elapsed:.0f}s\n{done.stdout}"

    lines = done.stdout.splitlines()
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("SUMMARY"))
    errors = [i for i, line in enumerate(lines) if line.startswith("[monitoring-error] wandb:")]
    assert errors and errors[0] < summary_at, done.stdout
    assert not any(line.startswith("[monitoring") for line in lines[summary_at:]), done.stdout

    summary = json.loads((tmp_path / "online" / "summary.json").read_text())
    wandb = summary["sinks"]["wandb"]
    assert wandb["failures"] >= 1 and wandb["delivered"] == 0 and wandb["undelivered"] == 20, wandb
    assert [error["sink"] for error in summary["errors"]] == ["wandb"]
