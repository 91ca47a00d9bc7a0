"""The run a rank > 0 gets with --prometheus-port (training/rank_exporter.py), in this process: torchrun's
environment set with monkeypatch as torchrun sets it, a real exporter scraped over HTTP."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_ml.backends.prometheus_targets import target_file
from codex_ml.tracking.config import TrackingConfig
from codex_ml.training.distributed import NullRun
from codex_ml.training.rank_exporter import RankRun, rank_run
from exporter_helpers import free_port_pair


@pytest.fixture
def rank1(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is rank 1 of 2, local rank 1 on node 0."""
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("GROUP_RANK", "0"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)


def _samples(port: int) -> dict[str, tuple[dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode("utf-8")
    return {s.name: (s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples}


def test_rank_run_exports_its_own_step_times_and_system_gauges_only(tmp_path: Path, rank1: None) -> None:
    base = free_port_pair()
    config = TrackingConfig(output_root=str(tmp_path), run_name="r", prometheus_port=base)
    run = rank_run(config, tmp_path / "r")
    assert isinstance(run, RankRun)
    try:
        run.log_metrics({"train/loss": 2.0, "time/step_s": 0.25, "time/data_wait_s": 0.01}, step=3)
        run.log_system_metrics({"system/cpu/percent": 42.0}, 0, 1.0)
        samples = _samples(base + 1)  # served synchronously: no flush in between
        labels = {"run": "r", "rank": "1", "node": "0"}
        assert samples["codex_time_step_s"] == (labels, 0.25)
        assert samples["codex_system_cpu_percent"] == (labels, 42.0)
        assert samples["codex_tracker_last_step"] == (labels, 3.0)
        assert "codex_train_loss" not in samples  # averaged over the ranks: rank 0 exports it
        assert target_file(tmp_path / "r", 1).exists()
    finally:
        run.close("FINISHED")
    assert not target_file(tmp_path / "r", 1).exists()
    with pytest.raises(OSError):
        _samples(base + 1)  # the port is free again


def test_a_taken_port_is_one_error_line_and_training_goes_on(tmp_path: Path, rank1: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        run = rank_run(TrackingConfig(output_root=str(tmp_path), run_name="r", prometheus_port=base), tmp_path / "r")
    assert type(run) is NullRun
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"[monitoring-error] prometheus: port {base + 1} on 127.0.0.1 is in use; choose another with "
                   "--prometheus-port (this rank's exporter is off; training continues)"]
    assert not target_file(tmp_path / "r", 1).exists()


def test_without_prometheus_a_rank_gets_the_plain_null_run(tmp_path: Path, rank1: None) -> None:
    assert type(rank_run(TrackingConfig(output_root=str(tmp_path), run_name="r"), tmp_path / "r")) is NullRun
