"""Per-rank heartbeats under torchrun: the file format, straggler scores, and what a silent rank is.

Every rank's background thread rewrites ``health/ranks/rank<k>.json`` about once a second
(:func:`write_beat`, atomic); rank 0's observer reads them all (:func:`read_beats`). A beat holds
where the rank runs (node, pid), a counter that moves on every write, its last logged step and
the compute time of its recent steps: the step time less the time the rank sat in the gradient
all-reduce waiting for its peers. Under DDP every rank's *step* time is the slowest rank's (they
all wait for it), so only the compute time tells which rank the others wait for.

:func:`straggler_scores` is NVRx's relative score turned around: a rank's median recent compute
time over the fastest rank's (1.0 is the fastest; 2.0 takes twice as long). The rules that read
these are in :mod:`codex_ml.health.rules_ranks`.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Beat", "beat_path", "pid_state", "read_beats", "straggler_scores", "write_beat"]

#: Logged steps a rank needs before it is scored: the first steps carry one-time costs that differ per rank.
MIN_STEPS = 3
#: The states a beat reports: the rank is training, or it closed its run (normally or not).
RUNNING, CLOSED = "running", "closed"


@dataclass(frozen=True)
class Beat:
    """One rank's heartbeat as written to its file."""

    rank: int
    node: str
    pid: int
    session: str  # the training session (rank 0's token): beats of an earlier session are stale
    seq: int  # moves on every write; the observer times silence by its own clock, not the writer's
    time: float  # the writer's unix time (informative only: nodes' clocks may differ)
    step: int | None = None  # the last step this rank logged
    step_s: list[float] = field(default_factory=list)  # recent step times, oldest first
    compute_s: list[float] = field(default_factory=list)  # the same steps less the all-reduce wait
    state: str = RUNNING
    stacks: int = 0  # the last stack-dump request this rank answered

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the file."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Beat:
        """The beat of a file's JSON object; ValueError if a key is missing or has the wrong type."""
        try:
            return cls(rank=int(data["rank"]), node=str(data["node"]), pid=int(data["pid"]),
                       session=str(data["session"]), seq=int(data["seq"]), time=float(data["time"]),
                       step=None if data.get("step") is None else int(data["step"]),
                       step_s=[float(v) for v in data.get("step_s", [])],
                       compute_s=[float(v) for v in data.get("compute_s", [])],
                       state=str(data.get("state", RUNNING)), stacks=int(data.get("stacks", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a heartbeat ({exc!r})") from exc

    @property
    def median_step_s(self) -> float | None:
        """The median of the recent step times (None before the first logged step)."""
        return statistics.median(self.step_s) if self.step_s else None

    @property
    def median_compute_s(self) -> float | None:
        """The median of the recent compute times (None before the first logged step)."""
        return statistics.median(self.compute_s) if self.compute_s else None


def beat_path(directory: str | os.PathLike[str], rank: int) -> Path:
    """``<directory>/rank<k>.json``."""
    return Path(directory) / f"rank{rank}.json"


def write_beat(directory: str | os.PathLike[str], beat: Beat) -> Path:
    """Replace ``rank<k>.json`` atomically (a reader never sees half a file); returns its path."""
    path = beat_path(directory, beat.rank)
    tmp = path.with_name(f".{path.name}.{beat.pid}.tmp")
    tmp.write_text(json.dumps(beat.to_json(), separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_beats(directory: str | os.PathLike[str], session: str | None = None) -> dict[int, Beat]:
    """Every readable beat in ``directory`` by rank, only ``session``'s when given. A file being
    replaced or unreadable is skipped this round (the next round reads it)."""
    beats: dict[int, Beat] = {}
    for path in Path(directory).glob("rank*.json"):
        try:
            beat = Beat.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        if session is None or beat.session == session:
            beats[beat.rank] = beat
    return beats


def straggler_scores(beats: Iterable[Beat], min_steps: int = MIN_STEPS) -> dict[int, float]:
    """``{rank: median compute time / the fastest rank's}`` over the running ranks that have logged
    ``min_steps`` steps. Empty with fewer than two such ranks (nothing to compare), or when the
    fastest takes no measurable time."""
    known = {b.rank: statistics.median(b.compute_s) for b in beats
             if b.state == RUNNING and len(b.compute_s) >= min_steps}
    if len(known) < 2:
        return {}
    fastest = min(known.values())
    if fastest <= 0.0:
        return {}
    return {rank: m / fastest for rank, m in sorted(known.items())}


def pid_state(pid: int) -> str:
    """What became of a process on this host: ``running``, ``stopped`` (SIGSTOP or a debugger),
    ``died`` (gone, or a zombie nobody reaped) or ``unknown`` (no /proc and no permission)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "died"
    except (OSError, IndexError):
        return _signal_zero(pid)
    return {"T": "stopped", "t": "stopped", "Z": "died", "X": "died"}.get(state, "running")


def _signal_zero(pid: int) -> str:
    """Without /proc: signal 0 says whether the pid exists (not whether it is stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "died"
    except OSError:
        return "unknown"
    return "running"
