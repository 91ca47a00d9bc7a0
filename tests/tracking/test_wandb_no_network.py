"""W&B offline with no network at all (a fresh network namespace: not even loopback is up)
never waits on a connection: the job finishes and the offline run holds its history."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from codex_ml.backends.wandb import find_run_files, read_history

ROOT = Path(__file__).resolve().parents[2]


def test_wandb_offline_in_a_network_namespace_without_network(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to cut the network off"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [unshare, "--net", sys.executable, str(ROOT / "tools" / "monitoring_integrate.py"), "--steps", "20",
               "--no-progress", "--output-root", str(tmp_path), "--run-name", "nonet", "--enable-wandb"]  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    # W&B's network waits are 30 s or more; a bound on waiting, not a speed target.
    assert elapsed < 60, f"took {elapsed:.0f}s: something waited on the network"
    (run_file,) = find_run_files(tmp_path / "nonet")
    steps = sorted(row["step"] for row in read_history(run_file) if "train/loss" in row)
    assert steps == list(range(1, 21))
