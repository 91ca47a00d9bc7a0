"""torchrun --nproc_per_node=2 with --prometheus-port: a real Prometheus server finds both ranks' exporters through
the file_sd targets in the run directory and scrapes each rank's own system gauges and step time; two torchrun
agents on one host (--nnodes=2) are told apart by ``node``, pick their own free ports and publish new targets
after an elastic restart.

Needs ``/usr/bin/prometheus`` (scripts/install_system_deps.sh); our own server on a free 127.0.0.1 port, its data in
tmp_path. Training is stopped with SIGTERM once both ranks are scraped (what a scheduler sends), so the test is as
long as torchrun's start-up plus a few 1 s scrapes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.monitoring.ui import free_port
from exporter_helpers import (free_port_pair, prometheus_query, require_prometheus, start_prometheus, stop_prometheus,
                              write_prometheus_config)
from trainer_helpers import TINY

RUN = "ranks"
START_TIMEOUT = 90.0


STANDALONE = ("--standalone", "--nproc_per_node=2")


def _start_training(root: Path, base: int, log: Any, launch: tuple[str, ...] = STANDALONE) -> subprocess.Popen:
    """A long tiny train-model under torchrun (the test stops it), every rank exporting from ``base`` up."""
    # A fresh c10d store per rendezvous round, so a restarted group never reads the dead one's (test_elastic.py).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "codex_ml.cli", "train-model",
           "--no-progress", "--output-root", str(root), "--run-name", RUN, "--prometheus-port", str(base),
           "--system-metrics", "--system-metrics-interval", "0.2", *TINY,
           "training.max_steps=100000", "training.checkpoint_interval=100000", "training.eval_interval=100000",
           "training.histogram_interval=100000", "training.sample_interval=100000", "tracking.flush_interval=0.05"]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _kill_tree(job: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (each worker is in a session of its own: killing torchrun leaves them)."""
    try:
        procs = psutil.Process(job.pid).children(recursive=True) + [psutil.Process(job.pid)]
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    job.wait(timeout=30)


def _file_sd_config(path: Path, targets_dir: Path) -> None:
    """The documented scrape config (docs/prometheus.md), with 1 s intervals."""
    write_prometheus_config(path, job=(
        "    honor_labels: true\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets_dir}/*.json']\n"
        "        refresh_interval: 1s\n"
    ))


def _wait(what: str, check: Any, job: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert job.poll() is None, f"training exited ({job.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    return found


def _scrape(address: str) -> dict[str, dict[str, str]]:
    """``{metric name: labels}`` of one exporter's /metrics (empty while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=2) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return {}
    return {s.name: s.labels for family in text_string_to_metric_families(text) for s in family.samples}


def _by_rank(base: str, promql: str) -> dict[str, dict[str, Any]]:
    return {series["metric"].get("rank", "?"): series for series in prometheus_query(base, promql)}


def test_prometheus_scrapes_every_rank_through_the_run_dirs_file_sd_targets(tmp_path: Path) -> None:
    require_prometheus()
    base_port, server = free_port_pair(), f"http://127.0.0.1:{free_port()}"
    targets, log_path = tmp_path / RUN / "prometheus", tmp_path / "train.log"
    log = log_path.open("w")
    job = _start_training(tmp_path, base_port, log)
    prometheus = None
    try:
        files = _wait("both ranks' targets", lambda: sorted(p.name for p in targets.glob("*.json")) == [
            "rank-0.json", "rank-1.json"], job, log_path)
        assert files
        for rank in (0, 1):
            assert json.loads((targets / f"rank-{rank}.json").read_text()) == [{
                "targets": [f"127.0.0.1:{base_port + rank}"], "labels": {"run": RUN, "rank": str(rank), "node": "0"}}]
        (tmp_path / "prom").mkdir()
        _file_sd_config(tmp_path / "prom" / "prometheus.yml", targets)
        prometheus = start_prometheus(server, tmp_path / "prom" / "prometheus.yml")
        up = _wait("up == 1 for both ranks", lambda: (lambda r: r if {k: v["value"][1] for k, v in r.items()} == {
            "0": "1", "1": "1"} else None)(_by_rank(server, f'up{{job="codex_ml",run="{RUN}"}}')), job, log_path, 30)
        assert {rank: series["metric"]["instance"] for rank, series in up.items()} == {
            "0": f"127.0.0.1:{base_port}", "1": f"127.0.0.1:{base_port + 1}"}
        # Each rank's own system gauges and step time, under its own labels (no exported_* copies).
        cpu = _wait("a system gauge of each rank", lambda: (lambda r: r if set(r) == {"0", "1"} else None)(
            _by_rank(server, f'codex_system_memory_percent{{run="{RUN}"}}')), job, log_path, 30)
        assert set(cpu["1"]["metric"]) == {"__name__", "run", "rank", "node", "job", "instance"}
        assert cpu["1"]["metric"]["node"] == "0" and cpu["1"]["metric"]["instance"] == f"127.0.0.1:{base_port + 1}"
        step_s = _wait("each rank's step time", lambda: (lambda r: r if set(r) == {"0", "1"} else None)(
            _by_rank(server, f'codex_time_step_s{{run="{RUN}"}}')), job, log_path, 30)
        assert all(float(series["value"][1]) > 0 for series in step_s.values())
        last = _by_rank(server, f'codex_tracker_last_step{{run="{RUN}"}}')
        assert set(last) == {"0", "1"} and all(float(s["value"][1]) >= 1 for s in last.values())
        # The averaged loss is rank 0's to export, once.
        assert set(_by_rank(server, f'codex_train_loss{{run="{RUN}"}}')) == {"0"}
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=60)
        # Closed: the targets are gone (a finished run is not "down"); the run dir keeps the folder.
        assert list(targets.glob("*.json")) == [], log_path.read_text()[-3000:]
    finally:
        _kill_tree(job)
        if prometheus is not None:
            stop_prometheus(prometheus)
        log.close()


def _worker(jobs: list[subprocess.Popen], rank: int) -> psutil.Process:
    """The live worker process of global rank ``rank`` (a child of one of the torchrun agents)."""
    for job in jobs:
        for child in psutil.Process(job.pid).children():
            if child.environ().get("RANK") == str(rank):
                return child
    raise AssertionError(f"no worker of rank {rank}")


def _targets(folder: Path) -> dict[int, dict[str, Any]]:
    """``{rank: its target group}`` as the files say now."""
    found = {}
    for path in folder.glob("rank-*.json"):
        try:
            group = json.loads(path.read_text())[0]
            found[int(path.stem.removeprefix("rank-"))] = {**group, "_mtime": path.stat().st_mtime_ns}
        except (OSError, ValueError):  # replaced or removed between glob and read
            continue
    return found


def _assert_each_rank_serves(groups: dict[int, dict[str, Any]], job: subprocess.Popen, log: Path) -> None:
    for rank, group in groups.items():
        labels = _wait(f"rank {rank}'s system gauges", lambda: _scrape(group["targets"][0]).get(
            "codex_system_memory_percent"), job, log, 30)
        assert labels == {"run": RUN, "rank": str(rank), "node": str(rank)}


def test_two_nodes_on_one_host_keep_their_own_ports_and_labels_through_an_elastic_restart(tmp_path: Path) -> None:
    """Two torchrun agents (--nnodes=2, c10d rendezvous, --max-restarts=1) on one host with --prometheus-port 0:
    each rank picks a free port and its target file says which; node is torchrun's node rank (0 and 1 although the
    host is one). Rank 1 killed -9: torchrun restarts the group and both ranks publish their new targets."""
    launch = ("--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
              "--rdzv-id=ranks-test", "--max-restarts=1", "--monitor-interval=0.1")
    targets, logs = tmp_path / RUN / "prometheus", [tmp_path / "node-a.log", tmp_path / "node-b.log"]
    handles = [path.open("w") for path in logs]
    jobs = [_start_training(tmp_path, 0, handle, launch) for handle in handles]
    try:
        before = _wait("both ranks' targets", lambda: (lambda t: t if len(t) == 2 else None)(_targets(targets)),
                       jobs[0], logs[0])
        assert {rank: group["labels"]["node"] for rank, group in before.items()} == {0: "0", 1: "1"}
        addresses = [group["targets"][0] for group in before.values()]
        assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
        _assert_each_rank_serves(before, jobs[0], logs[0])
        _worker(jobs, 1).kill()
        after = _wait("both ranks' targets of the restarted group", lambda: (lambda t: t if len(t) == 2 and all(
            t[r]["_mtime"] > before[r]["_mtime"] for r in t) else None)(_targets(targets)), jobs[0], logs[0])
        _assert_each_rank_serves(after, jobs[0], logs[0])
        for job in jobs:
            job.send_signal(signal.SIGTERM)
        for job in jobs:
            job.wait(timeout=60)
        assert list(targets.glob("*.json")) == []
    finally:
        for job in jobs:
            _kill_tree(job)
        for handle in handles:
            handle.close()
