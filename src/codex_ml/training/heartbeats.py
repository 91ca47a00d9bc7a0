"""Per-rank heartbeats under torchrun: every rank beats, rank 0 scores stragglers and names a silent rank.

Each rank runs a :class:`HeartbeatWriter` thread that rewrites ``health/ranks/rank<k>.json`` in the
run directory once a second (one small atomic file write: no collective, nothing on the training
thread but appending two floats when it logs a step). The run directory must therefore be on a
filesystem every node sees, which checkpoints and resume need anyway.

Step times alone cannot find a straggler: under DDP every rank waits for the slowest in the
gradient all-reduce, so all ranks' step times are equal. A DDP communication hook
(:class:`SyncTimer`, the default all-reduce plus a clock) measures how long this rank waited in it;
the step time less that wait is the rank's own compute time, which the beat carries.

On rank 0 a :class:`RankObserver` thread (its own thread: rank 0's training thread may be stuck in
the very collective a hung rank never joins) reads the beats about once a second and

* computes the straggler scores (:func:`codex_ml.health.stragglers.straggler_scores`), logged as
  ``ranks/straggler_score/rank<k>``, ``ranks/step_s/rank<k>`` and ``ranks/compute_s/rank<k>`` with
  rank 0's next training record, where the ``straggler`` rule sees them like any metric (above
  ``PER_RANK_LIMIT`` ranks only the slowest ``SLOWEST_SHOWN`` by name, with the job's max and median);
* runs the ``rank_hang`` rule: a rank whose beat has not moved for ``timeout_s`` (or whose process
  is gone from this host) is named in a health event, with every live rank's Python stacks, which
  each rank's writer thread dumps when rank 0 asks (``health/ranks/stacks.request``).

Nothing of this runs on a single process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from codex_ml.health.events import HealthEvent
from codex_ml.health.rules_ranks import RankHang
from codex_ml.health.stacks import dump_stacks
from codex_ml.health.stragglers import CLOSED, RUNNING, Beat, read_beats, straggler_scores, write_beat
from codex_ml.rundir.paths import RunPaths

__all__ = ["BEAT_INTERVAL_S", "HeartbeatWriter", "RankObserver", "HeartbeatRun", "SyncTimer", "attach"]

#: Seconds between two beats of a rank, and between two rounds of rank 0's observer.
BEAT_INTERVAL_S = 1.0
#: Recent steps a beat carries (the score uses their median: one slow step is not a straggler).
WINDOW = 8
#: The file rank 0 writes to ask every rank for its stacks.
STACKS_REQUEST = "stacks.request"
#: Seconds rank 0 waits for the live ranks' stacks before it records a rank_hang event.
STACKS_WAIT_S = 3.0
#: Up to this many scored ranks, rank 0 logs every rank's score and times; above it, only the
#: ``SLOWEST_SHOWN`` slowest ranks' (plus ``ranks/straggler_score_max`` and ``_median``).
PER_RANK_LIMIT = 16
SLOWEST_SHOWN = 8


class SyncTimer:
    """How long this rank waits for its peers inside DDP: the default gradient all-reduce (mean),
    timed by a communication hook, plus the buffer broadcast at the start of each DDP forward,
    timed by two forward pre-hooks (on the DDP module and on the module it wraps).

    A rank slow before its forward (data, host work) makes the others wait in the broadcast; one
    slow in forward/backward makes them wait in the all-reduce. The all-reduce wait runs from this
    rank's last gradient bucket being ready (its backward done) to that bucket's reduction
    completing. Both include the transfer itself, small next to a straggler's delay. On NCCL both
    collectives are asynchronous (the hooks see them enqueued, not waited for), so there the waits
    read near 0 and the scores near 1: CPU (gloo) only until they are timed with CUDA events.
    """

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.waited = 0.0  # seconds waited since the last take()
        self._entered = 0.0

    @classmethod
    def install(cls, model: Any, world_size: int) -> SyncTimer | None:
        """Register on ``model`` if it is a DDP module (before its first forward); None otherwise."""
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(model, DistributedDataParallel):
            return None
        timer = cls(world_size)

        def hook(state, bucket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202 - DDP checks annotations by identity
            return timer.all_reduce(bucket)

        try:
            model.register_comm_hook(None, hook)
        except RuntimeError as exc:  # a hook is already registered: step times only, said once
            print(f"[train] heartbeats: no all-reduce timing ({exc}); straggler scores use step times",
                  file=sys.stderr)
            return None
        model.register_forward_pre_hook(timer._enter)
        model.module.register_forward_pre_hook(timer._entered_inner)
        return timer

    def take(self) -> float:
        """Seconds waited since the last call."""
        waited, self.waited = self.waited, 0.0
        return waited

    def _enter(self, module: Any, args: Any) -> None:
        self._entered = time.perf_counter()

    def _entered_inner(self, module: Any, args: Any) -> None:
        if self._entered:  # DDP's forward ran its buffer broadcast between the two hooks
            self.waited += time.perf_counter() - self._entered
            self._entered = 0.0

    def all_reduce(self, bucket: Any) -> Any:
        """Average ``bucket`` over the ranks, as DDP's default hook does; time the last bucket."""
        import torch.distributed as dist

        start = time.perf_counter()
        last = bucket.is_last()
        tensor = bucket.buffer()
        tensor.div_(self.world_size)
        future = dist.all_reduce(tensor, async_op=True).get_future()

        def done(fut: Any) -> Any:
            if last:
                self.waited += time.perf_counter() - start
            return fut.value()[0]

        return future.then(done)


class HeartbeatWriter:
    """One rank's beat: a daemon thread rewriting ``rank<k>.json`` every ``interval`` seconds and
    answering rank 0's stack-dump requests."""

    def __init__(self, directory: Path, rank: int, session: str, timer: SyncTimer | None,
                 interval: float = BEAT_INTERVAL_S) -> None:
        self.directory, self.rank, self.session = Path(directory), rank, session
        self.timer, self.interval = timer, interval
        self.node, self.pid = socket.gethostname(), os.getpid()
        self.step: int | None = None
        self.step_s: deque[float] = deque(maxlen=WINDOW)
        self.compute_s: deque[float] = deque(maxlen=WINDOW)
        self.seq = self.stacks = 0
        self._request_mtime = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"codex-heartbeat-rank{rank}", daemon=True)

    def record(self, step: int, step_s: float) -> None:
        """A step this rank logged (training thread: two appends, no I/O). The wait since the
        last logged step is spread evenly over the steps in between (``log_interval`` > 1)."""
        steps = max(1, step - self.step) if self.step is not None else 1
        wait = self.timer.take() / steps if self.timer is not None else 0.0
        self.step = step
        self.step_s.append(step_s)
        self.compute_s.append(max(0.0, step_s - wait))

    def start(self) -> HeartbeatWriter:
        """Beat now (so rank 0 sees every rank at once), then every ``interval`` seconds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; the last beat says ``closed`` (an ended rank is not a hung one)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(2 * self.interval)
        self.beat(CLOSED)

    def beat(self, state: str = RUNNING) -> None:
        """Write this rank's beat file now."""
        self.seq += 1
        write_beat(self.directory, Beat(self.rank, self.node, self.pid, self.session, self.seq, time.time(),
                                        self.step, list(self.step_s), list(self.compute_s), state, self.stacks))

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._answer_stacks()
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a full disk, a bad request file: say so, keep beating
                print(f"[train] rank {self.rank} heartbeat: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _answer_stacks(self) -> None:
        """Dump this process's stacks if rank 0 asked since the last time (one stat per beat)."""
        path = self.directory / STACKS_REQUEST
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._request_mtime:
            return
        self._request_mtime = mtime
        request = json.loads(path.read_text(encoding="utf-8"))
        if request.get("session") == self.session and int(request["id"]) > self.stacks:
            dump_stacks(stacks_path(self.directory, int(request["step"]), self.rank))
            self.stacks = int(request["id"])


def stacks_path(directory: Path, step: int, rank: int) -> Path:
    """``health/stacks-<step>-rank<k>.txt`` beside the stall rule's ``stacks-<step>.txt``."""
    return Path(directory).parent / f"stacks-{step}-rank{rank}.txt"


class RankObserver:
    """Rank 0's view of every rank: scores for its next record, rank_hang events, live ranks' stacks."""

    def __init__(self, run: Any, directory: Path, session: str, world_size: int, rule: RankHang | None,
                 interval: float = BEAT_INTERVAL_S) -> None:
        self.run, self.directory, self.session, self.world_size = run, Path(directory), session, world_size
        self.rule, self.interval = rule, interval
        self.host = socket.gethostname()
        self.step: int | None = None  # rank 0's last logged step (the events' step)
        self.pending: dict[str, float] | None = None  # scores not yet logged
        self._scored: dict[int, int | None] = {}
        self._requests = 0
        self._warned = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="codex-rank-observer", daemon=True)

    def start(self) -> RankObserver:
        """Start the observer thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop observing (training is over: the ranks closing one by one is not a hang)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(STACKS_WAIT_S + 2 * self.interval)

    def take_metrics(self) -> dict[str, float] | None:
        """The scores computed since the last call (None: nothing new); for rank 0's next record."""
        metrics, self.pending = self.pending, None
        return metrics

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check(time.time())
            except Exception as exc:  # noqa: BLE001 - the observer reports, and keeps observing
                if not self._warned:
                    self._warned = True
                    print(f"[train] rank observer: {type(exc).__name__}: {exc}", file=sys.stderr)

    def check(self, now: float) -> list[HealthEvent]:
        """One round: read the beats, score them, run rank_hang; returns the events recorded."""
        beats = read_beats(self.directory, self.session)
        self._score(beats)
        if self.rule is None:
            return []
        events = self.rule.on_beats(now, beats, self.world_size, self.host, self.step)
        recorded = []
        for event in events:
            event = self._with_stacks(event, beats)
            self.run.log_event(event)
            print(f"[train] health rank_hang: {event.message}", file=sys.stderr, flush=True)
            recorded.append(event)
            if event.action == "stop":
                self._end(event)
        return recorded

    def _score(self, beats: dict[int, Beat]) -> None:
        """New scores when a rank logged a step since the last ones (a hung job keeps its last)."""
        steps = {rank: beat.step for rank, beat in beats.items()}
        if steps == self._scored:
            return
        scores = straggler_scores(beats.values())
        if not scores:
            return
        self._scored = steps
        metrics: dict[str, float] = {}
        shown = scores
        if len(scores) > PER_RANK_LIMIT:
            # Thousands of per-rank keys in every record of rank 0 would swamp the NDJSON log and
            # MLflow (docs/scale.md): log the job's spread and only the slowest ranks by name.
            ordered = sorted(scores.values())
            metrics["ranks/straggler_score_max"] = ordered[-1]
            metrics["ranks/straggler_score_median"] = ordered[len(ordered) // 2]
            shown = dict(sorted(scores.items(), key=lambda item: item[1], reverse=True)[:SLOWEST_SHOWN])
        for rank, score in shown.items():
            beat = beats[rank]
            metrics[f"ranks/straggler_score/rank{rank}"] = score
            metrics[f"ranks/step_s/rank{rank}"] = beat.median_step_s or 0.0
            metrics[f"ranks/compute_s/rank{rank}"] = beat.median_compute_s or 0.0
        self.pending = metrics

    def _with_stacks(self, event: HealthEvent, beats: dict[int, Beat]) -> HealthEvent:
        """Ask every rank for its stacks, dump rank 0's, wait a little for the live ones; name the files."""
        self._requests += 1
        step = self.step if self.step is not None else 0
        request = self.directory / STACKS_REQUEST
        tmp = request.with_name(f".{request.name}.tmp")
        tmp.write_text(json.dumps({"id": self._requests, "step": step, "session": self.session}), encoding="utf-8")
        os.replace(tmp, request)
        silent = {int(str(event.metric).rsplit("rank", 1)[-1])}
        live = [r for r, b in sorted(beats.items()) if r != 0 and r not in silent and b.state == RUNNING]
        files = [dump_stacks(stacks_path(self.directory, step, 0))]
        deadline = time.monotonic() + STACKS_WAIT_S
        wanted = {r: stacks_path(self.directory, step, r) for r in live}
        while time.monotonic() < deadline and not all(p.exists() for p in wanted.values()):
            time.sleep(0.1)
        files += [p for p in wanted.values() if p.exists()]
        missing = [str(r) for r, p in wanted.items() if not p.exists()]
        note = f"; stacks of the live ranks in {', '.join(str(f) for f in files)}"
        if missing:
            note += f" (ranks {', '.join(missing)} did not answer in {STACKS_WAIT_S:g} s)"
        return dataclasses.replace(event, message=event.message + note)

    def _end(self, event: HealthEvent) -> None:
        """``action: stop``: close the run FAILED and end this process (status 3), so torchrun ends
        the job, or restarts it from the last checkpoint when ``--max-restarts`` allows. The training
        thread cannot stop by itself: it waits in a collective the silent rank never joins."""
        from codex_ml.training.health_guard import EXIT_HEALTH_STOP

        print("[train] rank_hang has action stop: the run ends FAILED and rank 0 exits with status "
              f"{EXIT_HEALTH_STOP}", file=sys.stderr, flush=True)
        try:
            self.run.close("FAILED", timeout=10.0)
        finally:
            os._exit(EXIT_HEALTH_STOP)  # noqa: SLF001 - the training thread is stuck; nothing else can end it


class HeartbeatRun:
    """The rank's run with heartbeats: a step's time goes to the beat, rank 0's scores join its record."""

    def __init__(self, run: Any, writer: HeartbeatWriter, observer: RankObserver | None) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "writer", writer)
        object.__setattr__(self, "observer", observer)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Forward ``metrics``; a training record (it has ``time/step_s``) also feeds the heartbeat."""
        step_s = metrics.get("time/step_s")
        if step_s is not None and step is not None:
            self.writer.record(step, float(step_s))
            if self.observer is not None:
                self.observer.step = step
                extra = self.observer.take_metrics()
                if extra:
                    metrics = {**metrics, **extra}
        self._run.log_metrics(metrics, step)

    def close(self, status: str = "FINISHED", timeout: float | None = None) -> Any:
        """Stop observing and beating (the last beat says closed), then close the run."""
        try:
            if self.observer is not None:
                self.observer.stop()
            self.writer.stop()
        except Exception as exc:  # noqa: BLE001 - the run must close whatever became of the heartbeat
            print(f"[train] heartbeats: {type(exc).__name__}: {exc}", file=sys.stderr)
        return self._run.close(status, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._run, name, value)  # e.g. run.system_metrics: the real run stops it on close


def attach(run: Any, trainer: Any) -> Any:
    """``run`` with heartbeats under torchrun (``run`` itself on one process). Every rank calls it
    once, after the run is open and before the first forward (the all-reduce hook goes on then)."""
    info = trainer.info
    if not info.enabled:
        return run
    import torch.distributed as dist

    box = [uuid.uuid4().hex if info.is_main else None]
    dist.broadcast_object_list(box, src=0)  # once per session: stale beats of an earlier one are ignored
    directory = RunPaths(trainer.run_dir).health / "ranks"
    timer = SyncTimer.install(trainer.ddp, info.world_size)
    writer = HeartbeatWriter(directory, info.rank, str(box[0]), timer).start()
    observer = None
    if info.is_main:
        settings = trainer.health.active().get("rank_hang")
        rule = RankHang(**settings) if settings is not None else None
        observer = RankObserver(run, directory, str(box[0]), info.world_size, rule).start()
    return HeartbeatRun(run, writer, observer)
