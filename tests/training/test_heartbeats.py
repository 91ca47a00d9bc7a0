"""Heartbeats under real torchrun (gloo, CPU): a stopped rank is named with the live ranks' stacks, a slow rank
is reported as a straggler with its score, a clean run reports neither. Plus the in-process parts: the
writer/observer protocol on real files and a real run, and the documented bound."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codex_ml.health.rules_ranks import RankHang
from codex_ml.health.stragglers import pid_state, read_beats
from codex_ml.training import heartbeats
from codex_ml.training.heartbeats import HeartbeatWriter, RankObserver
from trainer_helpers import TINY, records

#: Every test run: the tiny model, evaluation/checkpoints/samples rare (they pause every rank alike).
QUIET = [*TINY, "training.eval_interval=1000", "training.checkpoint_interval=1000", "training.histogram_interval=1000",
         "training.sample_interval=1000", "tracking.flush_interval=0.05"]


def _torchrun(tmp_path: Path, name: str, nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "codex_ml.cli", "train-model", "--no-progress", "--output-root", str(tmp_path), "--run-name", name,
            *QUIET, *args]


def _run(tmp_path: Path, name: str, *args: str) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(_torchrun(tmp_path, name, 2, *args), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / name


def _events(run: Path, rule: str) -> list[dict[str, Any]]:
    path = run / "events.ndjson"
    return [e for e in records(path) if e["rule"] == rule] if path.exists() else []


def _scores(run: Path, rank: int) -> list[float]:
    key = f"ranks/straggler_score/rank{rank}"
    return [r["metrics"][key] for r in records(run / "metrics.ndjson") if key in r["metrics"]]


def _start_job(tmp_path: Path, name: str, nproc: int, *args: str) -> tuple[subprocess.Popen[bytes], Any, Path]:
    """An endless torchrun job of ``nproc`` ranks in its own session; its stderr file and its heartbeat folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _torchrun(tmp_path, name, nproc, "training.max_steps=100000", *args)
    err = (tmp_path / "err.txt").open("w+")
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    return job, err, tmp_path / name / "health" / "ranks"


def _beats_past_step_5(ranks: Path, nproc: int) -> dict[int, Any]:
    return _wait_for(lambda: (b := read_beats(ranks)) and len(b) == nproc and all((x.step or 0) >= 5 for x in b.values())
                     and b, 60, f"beats of {nproc} ranks past step 5")


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def test_stopped_rank_is_named_with_the_live_ranks_stacks(tmp_path: Path) -> None:
    """SIGSTOP rank 2 of 3: rank_hang names it (node, pid, stopped) within timeout_s + a few seconds, and the
    event points at rank 0's and rank 1's stacks, both showing the training thread in the collective."""
    job, err, ranks = _start_job(tmp_path, "hang", 3, "health.rank_hang.timeout_s=4")
    try:
        beats = _beats_past_step_5(ranks, 3)
        pid = beats[2].pid
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        (event,) = _wait_for(lambda: _events(tmp_path / "hang", "rank_hang"), 30, "rank_hang event")
        named_after = time.monotonic() - stopped
        assert named_after < 4 + 2 + 3 + 2, named_after  # timeout_s + beat + observer round + stacks wait, + slack
        assert event["metric"] == "ranks/heartbeat_age_s/rank2" and event["severity"] == "critical"
        message = event["message"]
        assert f"rank 2 (node {beats[2].node}, pid {pid}) is stopped" in message, message
        files = [Path(p) for p in re.findall(r"(/\S+stacks-\d+-rank\d\.txt)", message)]
        assert sorted(p.name.rsplit("-", 1)[1] for p in files) == ["rank0.txt", "rank1.txt"], message
        for path in files:  # each live rank's training thread waits in the collective rank 2 never joins
            text = path.read_text()
            assert 'Thread "MainThread"' in text and "heartbeat" in text, text[:2000]
        assert job.poll() is None  # action log: the job keeps waiting (a debugger's SIGSTOP may end)
    finally:
        _end_job(job, ranks)
        err.close()


def _end_job(job: subprocess.Popen[bytes], ranks: Path) -> None:
    """Kill every worker (torchrun starts them in their own sessions: killing torchrun leaves them running),
    then let torchrun reap them and exit; kill it too if it does not."""
    for beat in read_beats(ranks).values():
        for sig in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.kill(beat.pid, sig)
            except ProcessLookupError:
                pass
    try:
        job.wait(30)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait(30)


def test_rank_hang_action_stop_ends_the_job_and_the_run_failed(tmp_path: Path) -> None:
    """health.rank_hang.action=stop: rank 0 records the event, closes the run FAILED and exits 3, so torchrun
    ends the job although rank 0's training thread waits in a collective the stopped rank never joins."""
    job, err, ranks = _start_job(tmp_path, "stop", 2, "health.rank_hang.timeout_s=3", "health.rank_hang.action=stop")
    try:
        beats = _beats_past_step_5(ranks, 2)
        os.kill(beats[1].pid, signal.SIGSTOP)
        _wait_for(lambda: pid_state(beats[0].pid) == "died", 60, "rank 0's exit")
        # torchrun now stops rank 1: SIGTERM, which a stopped process only takes once continued (else SIGKILL
        # after torchrun's 30 s grace); continue it so the test need not wait for the grace.
        os.kill(beats[1].pid, signal.SIGCONT)
        assert job.wait(60) != 0
        err.seek(0)
        text = err.read()
        assert "rank_hang has action stop" in text and "exitcode  : 3" in text, text[-3000:]
    finally:
        _end_job(job, ranks)
        err.close()
    run = tmp_path / "stop"
    assert json.loads((run / "run.json").read_text())["status"] == "FAILED"
    (event,) = _events(run, "rank_hang")
    assert event["action"] == "stop" and "rank 1 (node" in event["message"]


def test_slow_rank_is_reported_as_a_straggler_with_its_score(tmp_path: Path) -> None:
    """Rank 1 sleeps 30 ms per step (300 steps: at least 9 s, over 5 score rounds of 1 s even when start-up eats
    the first ones): its score is logged on rank 0's run and the straggler rule (defaults) names it."""
    run = _run(tmp_path, "slow", "training.max_steps=300", "training.fault=slow@1:30ms@rank1")
    (event, *_) = _events(run, "straggler")
    assert event["metric"] == "ranks/straggler_score/rank1" and event["value"] > 1.5
    assert event["message"].startswith("rank 1 is a straggler")
    ones = _scores(run, 1)
    assert len(ones) >= 5 and sorted(ones)[len(ones) // 2] > 1.5, ones
    assert all(score < 1.5 for score in _scores(run, 0))
    assert not _events(run, "rank_hang")


def test_clean_run_has_no_straggler_and_no_hang(tmp_path: Path) -> None:
    """Every rank equally slow (20 ms more per step, 400 steps: at least 8 s, so the run lasts over 5 score
    rounds of 1 s even when start-up eats the first ones, and the default patience could fire), the default
    straggler rule, a short hang timeout: scores near 1, no event."""
    run = _run(tmp_path, "clean", "training.max_steps=400", "training.fault=slow@1:20ms",
               "health.rank_hang.timeout_s=4")
    assert len(_scores(run, 1)) >= 5 and len(_scores(run, 0)) >= 5
    assert not _events(run, "straggler") and not _events(run, "rank_hang")
    beats = {b["rank"]: b for b in (json.loads(p.read_text()) for p in (run / "health" / "ranks").glob("rank*.json"))}
    assert sorted(beats) == [0, 1] and all(b["state"] == "closed" and b["step"] == 400 for b in beats.values())


def test_observer_names_a_silent_writer_with_the_others_stacks(tmp_path: Path) -> None:
    """In one process: three writers beat into a real directory, one stops; rank 0's observer records the
    event on a real run, with the stacks the live writers dumped when asked."""
    from codex_ml.tracking import TrackingConfig, start_run

    run = start_run("obs", config=TrackingConfig(output_root=str(tmp_path), flush_interval=0.05))
    directory = tmp_path / "obs" / "health" / "ranks"
    writers = [HeartbeatWriter(directory, rank, "s1", None, interval=0.1).start() for rank in range(3)]
    observer = RankObserver(run, directory, "s1", 3, RankHang(timeout_s=2.0), interval=0.1)
    try:
        writers[2]._stopping.set()  # rank 2 stops beating (its thread ends; no "closed" beat)
        start = time.time()
        events: list[Any] = []
        while not events and time.time() - start < 10:
            events = observer.check(time.time())
            time.sleep(0.1)
        (event,) = events
        assert "rank 2 (node" in event.message and "is running but its heartbeat thread is stuck" in event.message
        assert "stacks-0-rank0.txt" in event.message and "stacks-0-rank1.txt" in event.message
        assert (tmp_path / "obs" / "health" / "stacks-0-rank1.txt").read_text().startswith("# codex_ml stack dump")
        assert "stacks-0-rank2.txt" not in event.message
    finally:
        for writer in writers[:2]:
            writer.stop()
        run.close()
    assert [e["rule"] for e in records(tmp_path / "obs" / "events.ndjson")] == ["rank_hang"]


def test_documented_hang_bound_follows_from_the_defaults() -> None:
    """docs/health.md promises a stopped rank is named within 35 s with the defaults (the issue's target: 60 s)."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    health, training = (docs / "health.md").read_text(), (docs / "training.md").read_text()
    defaults = RankHang.defaults()
    late = 2 * heartbeats.BEAT_INTERVAL_S + heartbeats.STACKS_WAIT_S  # last beat unseen + observer round + stacks
    hung, dead = defaults["timeout_s"] + late, defaults["dead_after_s"] + late
    assert (hung, dead) == (35.0, 8.0) and hung <= 60.0
    assert f"named within {hung:g} s" in health and f"within {dead:g} s;" in health
    assert f"named within\n  {hung:g} s with the defaults" in training and f"\n  {dead:g} s: a critical event" in training


def test_a_large_job_logs_its_spread_and_only_the_slowest_ranks_by_name(tmp_path: Path) -> None:
    """40 ranks' real beat files: rank 0's record gets the max and median scores and the slowest ranks'
    keys, not 120 per-rank keys; a job within the limit still gets every rank's."""
    from codex_ml.health.stragglers import Beat, write_beat
    from codex_ml.training import heartbeats

    def write(directory: Path, ranks: int) -> None:
        directory.mkdir()
        for rank in range(ranks):
            compute = [0.010 * (1 + rank / 10)] * 3  # rank k computes (1 + k/10) times the fastest
            write_beat(directory, Beat(rank, "n", 1, "s", 1, time.time(), 10, [c + 0.01 for c in compute], compute,
                                       "running"))

    big, small = tmp_path / "big", tmp_path / "small"
    write(big, 40)
    write(small, heartbeats.PER_RANK_LIMIT)
    observer = RankObserver(None, big, "s", 40, None)
    observer.check(time.time())
    metrics = observer.take_metrics()
    assert metrics is not None
    named = sorted(int(k.rsplit("rank", 1)[-1]) for k in metrics if k.startswith("ranks/straggler_score/"))
    assert named == list(range(40 - heartbeats.SLOWEST_SHOWN, 40))  # the slowest, by name
    assert metrics["ranks/straggler_score_max"] == pytest.approx(1 + 39 / 10)
    assert metrics["ranks/straggler_score_median"] == pytest.approx(1 + 20 / 10)
    assert len(metrics) == 3 * heartbeats.SLOWEST_SHOWN + 2
    observer = RankObserver(None, small, "s", heartbeats.PER_RANK_LIMIT, None)
    observer.check(time.time())
    metrics = observer.take_metrics() or {}
    assert len(metrics) == 3 * heartbeats.PER_RANK_LIMIT and "ranks/straggler_score_max" not in metrics
