"""The rank rules of a torchrun job: ``straggler`` and ``rank_hang`` (docs/health.md).

``straggler`` is an ordinary metrics rule: rank 0 logs ``ranks/straggler_score/rank<k>`` (from the
heartbeats, :mod:`codex_ml.health.stragglers`) with its training records, so the writer thread
evaluates it like any rule and a backtest replays it. ``rank_hang`` watches time across processes:
rank 0's observer thread (:mod:`codex_ml.training.heartbeats`) calls :meth:`RankHang.on_beats`
about once a second with every rank's latest beat, so it fires while rank 0's training thread is
stuck in the collective the silent rank never joins. It has no record to replay: live only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codex_ml.health.events import HealthEvent
from codex_ml.health.rules import NONE, MetricFilter, Param, Rule, fmt
from codex_ml.health.stragglers import CLOSED, Beat, pid_state

__all__ = ["HEARTBEAT_AGE_METRIC", "SCORE_METRIC", "RankHang", "Straggler"]

#: ``ranks/straggler_score/rank<k>``: rank k's compute time per step / the fastest rank's.
SCORE_METRIC = "ranks/straggler_score/rank{rank}"
#: The metric a rank_hang event names: seconds since rank k's heartbeat last moved.
HEARTBEAT_AGE_METRIC = "ranks/heartbeat_age_s/rank{rank}"


class Straggler(Rule):
    """A rank's straggler score above ``threshold`` for ``patience`` score records in a row; once
    per episode per rank, re-armed by a score back under the threshold."""

    name = "straggler"
    ALLOWED_ACTIONS = ("log", "stop")
    PARAMS = {
        "metrics": Param(["ranks/straggler_score/*"], list, "the per-rank scores rank 0 logs"),
        "threshold": Param(1.5, float, "score that fires: this rank computes 1.5x longer than the fastest", 1.0),
        "patience": Param(5, int, "score records in a row above the threshold (about one a second)", 1),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.watch = MetricFilter(self.settings["metrics"])
        self.threshold, self.patience = self.settings["threshold"], self.settings["patience"]
        self.above: dict[str, int] = {}
        self.fired: set[str] = set()

    def on_metrics(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> list[HealthEvent]:
        out = NONE
        for name in self.watch.select(metrics):
            score = metrics[name]
            if not score == score or score <= self.threshold:  # NaN or under the line: re-arm
                self.above[name] = 0
                self.fired.discard(name)
                continue
            self.above[name] = self.above.get(name, 0) + 1
            if self.above[name] >= self.patience and name not in self.fired:
                self.fired.add(name)
                rank = name.rsplit("/", 1)[-1].replace("rank", "rank ")
                out = [*out, self.event(wall_time, step, name, score, self.threshold,
                                        f"{rank} is a straggler: it computes {fmt(score)}x as long per step as the "
                                        f"fastest rank (straggler score above {fmt(self.threshold)} for "
                                        f"{self.above[name]} records in a row), so every rank waits for it in "
                                        f"each step's collectives")]
        return out


class RankHang(Rule):
    """A rank whose heartbeat has not moved for ``timeout_s`` (stopped, deadlocked, or on a lost
    node), or whose process is gone from this host for ``dead_after_s``; once per silence."""

    name = "rank_hang"
    ALLOWED_ACTIONS = ("log", "stop")
    COMMON_DEFAULTS = {"severity": "critical"}
    PARAMS = {
        "timeout_s": Param(30.0, float, "seconds without a heartbeat that name a rank hung", 2.0),
        "dead_after_s": Param(3.0, float, "seconds without a heartbeat, with its pid gone from this host: died", 0.0),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.timeout_s, self.dead_after_s = self.settings["timeout_s"], self.settings["dead_after_s"]
        self.seen: dict[int, tuple[int, float]] = {}  # rank -> (seq, when rank 0 saw it change)
        self.fired: set[int] = set()
        self.started: float | None = None

    def on_beats(self, now: float, beats: Mapping[int, Beat], world_size: int, host: str,
                 step: int | None) -> list[HealthEvent]:
        """Check every rank but the caller's (rank 0's observer is alive if it runs); ``beats`` are
        this session's latest, ``host`` is rank 0's node, ``step`` rank 0's last step."""
        if self.started is None:
            self.started = now
        out = NONE
        for rank in range(1, world_size):
            beat = beats.get(rank)
            silent = self._silence(rank, beat, now)
            if beat is not None and beat.state == CLOSED:
                continue  # it closed its run: torchrun reports how it ended
            if silent is None or rank in self.fired:
                continue
            state = pid_state(beat.pid) if beat is not None and beat.node == host else "unknown"
            if silent > self.timeout_s or (state == "died" and silent > self.dead_after_s):
                self.fired.add(rank)
                out = [*out, self.event(now, step, HEARTBEAT_AGE_METRIC.format(rank=rank), silent,
                                        self.timeout_s, _message(rank, beat, state, silent, beats))]
        return out

    def _silence(self, rank: int, beat: Beat | None, now: float) -> float | None:
        """Seconds since ``rank``'s beat last moved, by this clock (None: it just moved)."""
        if beat is None:  # no beat yet this session: silent since the observer started
            return now - (self.started if self.started is not None else now)
        last = self.seen.get(rank)
        if last is None or last[0] != beat.seq:
            self.seen[rank] = (beat.seq, now)
            self.fired.discard(rank)  # beating again: a later silence is a new event
            return None
        return now - last[1]


def _message(rank: int, beat: Beat | None, state: str, silent: float, beats: Mapping[int, Beat]) -> str:
    """Which rank, where, what its process looks like, and where the others are."""
    if beat is None:
        return f"rank {rank} has sent no heartbeat for {silent:.1f} s since the run started"
    where = f"rank {rank} (node {beat.node}, pid {beat.pid})"
    what = {"stopped": "is stopped (process state T: SIGSTOP or a debugger)",
            "died": "died (its process is gone) without torchrun ending the job",
            "running": "is running but its heartbeat thread is stuck (the GIL held in C code, or blocked I/O)",
            "unknown": "stopped beating (on another node: hung, or the node is lost)"}[state]
    others = ", ".join(f"rank {r} at step {b.step}" for r, b in sorted(beats.items()) if r != rank)
    return (f"{where} {what}: no heartbeat for {silent:.1f} s, its last beat at step {beat.step}"
            + (f"; {others}" if others else "") + ". The other ranks wait for it in the next collective")
