"""Runs and fork(): children that log, DataLoader-style workers, concurrent threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from codex_ml.rundir.reader import ReadReport, iter_records

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(tmp_path)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)  # fmt: skip


def _records(path: Path) -> list[dict]:
    report = ReadReport(str(path))
    records = list(iter_records(path, report))
    assert report.bad_lines == [] and not report.torn_tail
    return records


def test_forked_children_that_log_neither_duplicate_nor_interleave(tmp_path: Path) -> None:
    """The parent queues records, forks 3 children (os.fork and multiprocessing) that each log
    200 records while the parent keeps logging: every line is whole, each record appears once,
    the parent's queued records are not written twice, and only the parent closes the run."""
    done = _run(
        tmp_path,
        """
        import multiprocessing as mp, os, sys
        from codex_ml.tracking import start_run

        def child(run, base):
            for i in range(200):
                run.log_metrics({"child/x": float(i), "pid": os.getpid()}, step=base + i)

        run = start_run("forked", output_root=sys.argv[1], flush_interval=30.0)  # nothing drained before fork
        for i in range(50):
            run.log_metrics({"parent/x": float(i)}, step=i)
        pid = os.fork()
        if pid == 0:
            child(run, 10_000)
            os._exit(0)
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=child, args=(run, base)) for base in (20_000, 30_000)]
        for p in procs:
            p.start()
        for i in range(50, 250):
            run.log_metrics({"parent/x": float(i)}, step=i)
        os.waitpid(pid, 0)
        for p in procs:
            p.join()
            assert p.exitcode == 0
        run.close()
        """,
    )
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "forked"
    steps = [r["step"] for r in _records(run_dir / "metrics.ndjson")]
    expected = list(range(250)) + [b + i for b in (10_000, 20_000, 30_000) for i in range(200)]
    assert sorted(steps) == sorted(expected)  # each exactly once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["records"] == 250  # children never closed the run


def test_fork_workers_with_prometheus_do_not_bind_twice_or_hang(tmp_path: Path) -> None:
    """A torch DataLoader with 2 fork workers inside a run that serves Prometheus: the job
    finishes, workers do not bind the port again, and every step is logged once."""
    done = _run(
        tmp_path,
        """
        import socket, sys, torch
        from torch.utils.data import DataLoader, TensorDataset
        from codex_ml.tracking import start_run

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
        data = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=8, num_workers=2,
                          multiprocessing_context="fork")
        with start_run("loader", output_root=sys.argv[1], prometheus_port=port, flush_interval=0.05) as run:
            for epoch in range(2):
                for step, (batch,) in enumerate(data):
                    run.log_metrics({"x": float(batch.sum())}, step=epoch * 8 + step)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "[monitoring-error]" not in done.stderr
    steps = [r["step"] for r in _records(tmp_path / "loader" / "metrics.ndjson")]
    assert steps == list(range(16))


def test_threads_logging_beside_the_sampler_lose_nothing(tmp_path: Path) -> None:
    """Four threads log concurrently while the system sampler runs: every line is valid JSON
    and every record is there."""
    done = _run(
        tmp_path,
        """
        import sys, threading, time
        from codex_ml.tracking import start_run

        with start_run("threads", output_root=sys.argv[1], flush_interval=0.01, system_metrics="AUTO",
                       system_metrics_interval=0.1) as run:
            def work(t):
                for i in range(2000):
                    run.log_metrics({f"t{t}": float(i)}, step=t * 100_000 + i)
            threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for th in threads: th.start()
            for th in threads: th.join()
            time.sleep(0.5)  # a few sampler ticks
        """,
    )
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "threads"
    steps = sorted(r["step"] for r in _records(run_dir / "metrics.ndjson"))
    assert steps == sorted(t * 100_000 + i for t in range(4) for i in range(2000))
    assert _records(run_dir / "system_metrics.jsonl")  # the sampler wrote whole lines too
