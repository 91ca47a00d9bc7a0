"""Heartbeat files, straggler scores and what a silent rank is, on real files and real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codex_ml.health.rules_ranks import RankHang
from codex_ml.health.stragglers import CLOSED, Beat, pid_state, read_beats, straggler_scores, write_beat


def beat(rank: int, compute: list[float], *, session: str = "s", seq: int = 1, pid: int = 1, node: str = "n",
         state: str = "running", step: int | None = 10) -> Beat:
    return Beat(rank, node, pid, session, seq, time.time(), step, [c + 0.01 for c in compute], compute, state)


def test_beats_round_trip_through_files_and_skip_other_sessions_and_torn_files(tmp_path: Path) -> None:
    mine = beat(0, [0.01, 0.02, 0.03])
    write_beat(tmp_path, mine)
    write_beat(tmp_path, beat(1, [0.5], session="earlier"))
    (tmp_path / "rank2.json").write_text('{"rank": 2, "node": "n", "pi')  # torn: skipped this round
    assert read_beats(tmp_path, "s") == {0: mine}
    assert sorted(read_beats(tmp_path)) == [0, 1]
    assert not list(tmp_path.glob(".*.tmp"))  # replaced atomically, nothing left behind
    assert mine.median_compute_s == 0.02 and mine.median_step_s == pytest.approx(0.03)


def test_scores_are_median_compute_time_over_the_fastest_rank(tmp_path: Path) -> None:
    for b in (beat(0, [0.010, 0.011, 0.200]), beat(1, [0.030, 0.031, 0.029]), beat(2, [0.012, 0.012, 0.013]),
              beat(3, [], step=None), beat(4, [0.001], state=CLOSED)):
        write_beat(tmp_path, b)
    scores = straggler_scores(read_beats(tmp_path).values())
    # rank 0's one slow step does not count (median); rank 3 has no step yet; rank 4 closed its run.
    assert scores == pytest.approx({0: 1.0, 1: 30 / 11, 2: 12 / 11})
    assert straggler_scores([beat(0, [0.01] * 3)]) == {}  # one rank: nothing to compare
    assert straggler_scores([beat(0, [0.01] * 3), beat(1, [0.5] * 2)]) == {}  # rank 1's first steps are not scored


def test_pid_state_of_running_stopped_and_dead_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_state(child.pid) == "running"
        child.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while pid_state(child.pid) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_state(child.pid) == "stopped"
        child.kill()
        time.sleep(0.2)
        assert pid_state(child.pid) == "died"  # a zombie nobody reaped yet
    finally:
        child.kill()
        child.wait()
    assert pid_state(child.pid) == "died"  # reaped: the pid is gone


def test_rank_whose_process_is_gone_is_named_died_before_the_timeout(tmp_path: Path) -> None:
    """A dead rank on rank 0's host (torchrun did not notice) is named after dead_after_s, not timeout_s."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    rule = RankHang(timeout_s=30.0, dead_after_s=2.0)
    beats = {1: beat(1, [0.01], pid=child.pid, node="here", step=41)}
    assert rule.on_beats(100.0, beats, 2, "here", 42) == []  # first sight: the counter just moved
    assert rule.on_beats(101.5, beats, 2, "here", 42) == []
    (event,) = rule.on_beats(102.5, beats, 2, "here", 42)
    assert f"rank 1 (node here, pid {child.pid}) died" in event.message and "its last beat at step 41" in event.message
    assert (event.step, event.value, event.threshold) == (42, 2.5, 30.0)
    assert rule.on_beats(200.0, beats, 2, "here", 42) == []  # once per silence


def test_rank_that_never_beat_is_named_after_timeout_and_closed_ranks_are_not() -> None:
    rule = RankHang(timeout_s=5.0)
    closed = {2: beat(2, [0.01], state=CLOSED)}
    assert rule.on_beats(0.0, closed, 3, "here", None) == []
    assert rule.on_beats(4.0, closed, 3, "here", None) == []
    (event,) = rule.on_beats(6.0, closed, 3, "here", None)
    assert event.metric == "ranks/heartbeat_age_s/rank1" and "no heartbeat for 6.0 s since the run started" in event.message
