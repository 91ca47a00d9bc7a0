"""benchmarks/bench_mlflow_server.py --quick against a real MLflow server on PostgreSQL (scripts/mlflow_server.sh):
every case runs, every point is read back, and the printed figures are sane (not fast: the machine is shared)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_mlflow_server.py"


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip


@pytest.mark.skipif(not Path("/usr/lib/postgresql/15/bin/postgres").exists() and not shutil.which("pg_ctl"),
                    reason="PostgreSQL 15 is not installed (scripts/install_system_deps.sh)")
def test_quick_run_reads_back_every_point_and_prints_sane_figures(tmp_path: Path) -> None:
    """Two runs: codex_ml and MlflowClient b=1000 bursts, paced NDJSON-only / codex_ml / MlflowClient rows."""
    rows_file = tmp_path / "rows.jsonl"
    done = _bench("--quick", "--runs", "2", "--json", str(rows_file))
    assert done.returncode == 0, done.stderr[-3000:]
    *rows, storage = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert [(r["mode"], r["client"], r["runs"]) for r in rows] == [
        ("burst", "codex_ml", 2), ("burst", "MlflowClient b=1000", 2), ("paced", "codex_ml NDJSON only", 2),
        ("paced", "codex_ml", 2), ("paced", "MlflowClient b=10/step", 2)]  # fmt: skip
    assert all(r["missing"] == 0 and r["complete"] for r in rows)
    assert [r["points"] for r in rows[:2]] == [4_000, 4_000] and all(0 < r["points_s"] < 1e6 for r in rows)
    ndjson, codex, client = rows[2:]
    assert all(r["achieved_min"] > 0 and 0 < r["call_median_us"] <= r["call_p99_us"] for r in rows[2:])
    # The hot path only queues: far below one HTTP round trip, which the MLflow client pays per step.
    assert codex["call_median_us"] < 5_000 < client["call_median_us"] * 10
    assert codex["probes"] == client["probes"] == 2 * 20 and math.isnan(ndjson["delay_p50_ms"])
    # codex_ml's sink sends once per flush interval (1 s): the delay is about half of that, bounded.
    assert 0 < codex["delay_p50_ms"] <= codex["delay_p99_ms"] <= codex["upper_p99_ms"] < 30_000
    assert "| 2 | codex_ml | 4,000 |" in done.stdout and "storage: {'store': 'postgres'" in done.stdout
    # Every point of every case is a row of MLflow's metrics table; a row takes tens to thousands of bytes.
    points = sum(r["points"] for r in rows if r["client"] != "codex_ml NDJSON only")
    assert storage["storage"]["metric_rows"] == points and 50 < storage["storage"]["bytes_per_row"] < 5_000


def test_bad_arguments_are_one_error_line() -> None:
    """A batch that is not whole steps, and a tracking URI that is not a server, stop before anything runs."""
    done = _bench("--mlflow-batches", "15", timeout=60)
    assert done.returncode == 2 and "multiples of 10" in done.stderr
    done = _bench("--tracking-uri", "file:///tmp/mlruns", timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --tracking-uri file:///tmp/mlruns: an http(s):// MLflow server is needed"]
