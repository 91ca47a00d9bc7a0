"""benchmarks/bench_resume.py end to end on a tiny run: both modes resume complete, and only the default
(back-fill in the sink processes) keeps the backends out of the trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_resume_prints_both_modes() -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_resume.py"), "--steps", "50", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split(" | ")[0]: line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| back-fill")}
    assert rows["| back-fill in the sink processes (default)"][3:] == ["none", "True |"]
    assert rows["| back-fill in the trainer (sink_process=false)"][3:] == ["mlflow, tensorboard, wandb", "True |"]
    assert "x faster in the sink processes" in done.stdout
