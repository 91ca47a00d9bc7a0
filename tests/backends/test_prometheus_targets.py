"""The exporter's place in a torchrun job (port base + local rank, labels rank and node) and its file_sd target.

Real runs and real HTTP scrapes; torchrun's environment is set with monkeypatch, as torchrun sets it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.backends.prometheus import PrometheusSink
from codex_ml.backends.prometheus_targets import PortRangeError, Place, target_address, target_file, torchrun_place
from codex_ml.tracking import start_run
from exporter_helpers import exporter_port, free_port_pair


def _torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int, local_rank: int, node: int, world: int) -> None:
    for name, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("GROUP_RANK", node), ("WORLD_SIZE", world)):
        monkeypatch.setenv(name, str(value))


def _series(port: int, name: str) -> dict[frozenset[tuple[str, str]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode("utf-8")
    return {frozenset(s.labels.items()): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}  # fmt: skip


def _wait_series(port: int, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Scrape until ``name`` is there (the exporter starts on the sink's thread, the values come within a flush)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            found = _series(port, name)
        except OSError:  # not listening yet
            found = {}
        if found:
            return found
        assert time.monotonic() < deadline, f"{name} never appeared on port {port}"
        time.sleep(0.02)


def test_under_torchrun_each_rank_serves_base_plus_local_rank_with_its_labels(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 2 of 3, local rank 1 on node 1: port base + 1, every series labelled rank="2", node="1"; its target
    file names the same labels; stale targets of ranks beyond the job go at start, its own goes at close."""
    _torchrun_env(monkeypatch, rank=2, local_rank=1, node=1, world=3)
    base = free_port_pair()
    run_root = tmp_path / "runs" / "ddp"
    targets = run_root / "prometheus"
    targets.mkdir(parents=True)
    (targets / "rank-5.json").write_text("[]")  # a rank of an earlier, larger job
    (targets / "rank-1.json").write_text("[]")  # a rank of this job: its own exporter replaces it
    with start_run("ddp", output_root=tmp_path / "runs", flush_interval=0.05, prometheus_port=base) as run:
        run.log_metrics({"train/loss": 2.5, "time/step_s": 0.125}, step=7)
        labels = frozenset({("run", "ddp"), ("rank", "2"), ("node", "1")})
        assert _wait_series(base + 1, "codex_train_loss") == {labels: 2.5}
        assert _series(base + 1, "codex_tracker_last_step") == {labels: 7.0}
        written = json.loads(target_file(run_root, 2).read_text())
        assert written == [{"targets": [f"127.0.0.1:{base + 1}"], "labels": {"run": "ddp", "rank": "2", "node": "1"}}]
        assert sorted(p.name for p in targets.iterdir()) == ["rank-1.json", "rank-2.json"]
    assert sorted(p.name for p in targets.iterdir()) == ["rank-1.json"]  # closed: its target is gone


def test_a_single_process_keeps_its_labels_and_writes_its_target(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No torchrun: no rank/node labels (series as before), port as given, target rank-0.json while open."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    sink = PrometheusSink(0)
    with start_run("solo", output_root=tmp_path, flush_interval=0.05, sinks=[sink]) as run:
        port = exporter_port(sink)
        run.log_metrics({"train/loss": 1.5}, step=1)
        assert _wait_series(port, "codex_train_loss") == {frozenset({("run", "solo")}): 1.5}
        assert json.loads(target_file(tmp_path / "solo", 0).read_text()) == [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"run": "solo"}}]
    assert not target_file(tmp_path / "solo", 0).exists()


def test_a_newer_sessions_target_is_not_removed_by_an_older_close(tmp_path: Path) -> None:
    """close() removes the file only while it holds what this exporter wrote."""
    sink = PrometheusSink(0)
    with start_run("again", output_root=tmp_path, flush_interval=0.05, sinks=[sink]):
        exporter_port(sink)
        path = target_file(tmp_path / "again", 0)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:  # the sink writes its target after binding
            time.sleep(0.01)
        path.write_text(json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"run": "again"}}]))
    assert path.exists()


def test_place_from_torchrun_environment() -> None:
    """What torchrun's variables mean for the exporter, and the targets' host:port spelling."""
    assert torchrun_place({}) == Place()
    assert torchrun_place({"WORLD_SIZE": "1", "RANK": "0"}).labels() == {}
    place = torchrun_place({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"})
    assert (place.port(9100), place.port(0), place.port(None)) == (9101, 0, None)
    assert place.labels() == {"rank": "3", "node": "1"}
    with pytest.raises(PortRangeError, match="65535"):
        place.port(65535)
    with pytest.raises(ValueError, match="not integers"):
        torchrun_place({"WORLD_SIZE": "two"})
    assert target_address("::1", 9100) == "[::1]:9100"
    assert target_address("0.0.0.0", 9100) == f"{socket.gethostname()}:9100"
