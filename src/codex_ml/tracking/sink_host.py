"""A sink process: TensorBoard, MLflow or W&B delivery, outside the training process.

``python -m codex_ml.tracking.sink_host REPLY_FD NICE IDLE`` is started by a run (tracking/sink_process.py)
when it opens. It reads frames (tracking/frames.py) on stdin: first the run's description, then
the batches the run's writer thread already wrote to metrics.ndjson, then ``finish``, ``upload``
and ``exit``. Its one sink runs on a SinkWorker thread here exactly as it would in the trainer
(retries, disabling, the close deadline); what the worker says and what the sink asks to keep in
run.json goes back to the run on REPLY_FD, which prints and stores it (one writer per run dir).

Why a process: importing MLflow, W&B and TensorBoard and encoding their records cost CPU and
hold the GIL; in the trainer they slowed training by ~2 % at torch's default threads and delayed
its first step by seconds. Here they run at the lowest CPU priority (SCHED_IDLE and ``nice``) in
their own interpreter, and W&B's service process inherits that priority. The process stays in the
trainer's session (its own process group, so a terminal's Ctrl-C does not reach it): Linux's
autogroup scheduler shares the CPU between sessions first, so a process in a session of its own
would get an equal share however low its priority.

The process outlives a trainer killed with SIGKILL only to drain: when its stdin ends (or its
parent is gone) before ``finish``, it delivers what it already received and closes the backends
as KILLED, all within the close timeout (at most ``ORPHAN_DRAIN_S``), and exits. It inherited the
run's lock descriptor, so a resume waits for that drain instead of writing the run beside it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.sink import RunInfo
from codex_ml.tracking import frames
from codex_ml.tracking.reporting import Reporter
from codex_ml.tracking.worker import ABORT_WAIT, STOP_GRACE, SinkWorker

#: Seconds an orphaned sink process keeps delivering after its trainer died (or the close timeout, if lower).
ORPHAN_DRAIN_S = 30.0
#: How often the sink counts go back to the run (its health() and Prometheus read them).
STATS_INTERVAL = 1.0
#: How often the process checks that its trainer is alive (stdin may stay open in a forked child of it).
PARENT_POLL = 0.5


class Replies:
    """Messages to the run; once the run is gone, problems are printed here instead."""

    def __init__(self, fd: int, run_name: str) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.gone = False
        #: Prints what the run can no longer print (its own Reporter, in the trainer, does otherwise).
        self.fallback = Reporter(run_name)

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send ``message``; False (and nothing raised) when the run no longer listens."""
        with self._lock:
            if self.gone:
                return False
            try:
                frames.send(self._fd, message)
                return True
            except OSError:
                self.gone = True
                return False

    # The Reporter interface the workers use (tracking/reporting.py): the run prints and keeps it.
    def error(self, sink: str, why: str) -> None:
        """One ``[monitoring-error]`` line, printed by the run (here if the run is gone)."""
        if not self.send(("error", sink, why)):
            self.fallback.error(sink, f"{why} (sink process)")

    def warn(self, sink: str, message: str) -> None:
        """One ``[monitoring]`` warning, printed by the run (here if the run is gone)."""
        if not self.send(("warn", sink, message)):
            self.fallback.warn(sink, f"{message} (sink process)")


class Host:
    """One sink of a run and its worker, driven by the run's messages."""

    def __init__(self, hello: dict[str, Any], replies: Replies) -> None:
        from codex_ml.plugins.registry import Registry
        from codex_ml.secrets.credentials import keep_credentials

        for uri, creds in hello.get("credentials", {}).items():
            keep_credentials(uri, creds)
        config = hello["config"]
        self._replies = replies
        self._trainer_pid = hello["trainer_pid"]
        self._close_timeout = float(config.close_timeout)
        sink = Registry().load("sinks", hello["sink"]).from_config(config)
        info = RunInfo(hello["name"], hello["run_id"], RunPaths(Path(hello["root"])), hello["resumed"],
                       hello["backends"], self._remember, replies.warn)  # fmt: skip
        self.worker = SinkWorker(sink, info, replies, config.sink_max_pending, config.sink_max_failures)
        self._config = config
        #: A resume's back-fill first (points logged before this wall time), then the sink starts.
        self._backfill_before: float | None = hello.get("backfill_before")
        self._starting: threading.Thread | None = None
        self._gave_up_starting = False
        self._root = Path(hello["root"])
        #: Everything the sink asked to keep in run.json: written here too once the run is gone.
        self._remembered: dict[str, dict[str, Any]] = {}
        self._orphaned = False
        self._finishing: threading.Thread | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def _remember(self, sink: str, values: dict[str, Any]) -> None:
        with self._lock:
            self._remembered.setdefault(sink, {}).update(values)
            orphaned = self._orphaned
        if orphaned or not self._replies.send(("remember", sink, values)):
            self._write_remembered()

    def _write_remembered(self) -> None:
        """Put the backend ids into run.json ourselves: the run that writes it is gone (killed) and we
        hold its lock, so a resume finds the same MLflow and W&B runs even if the run never heard of them."""
        from codex_ml.rundir.run_files import read_json, write_json_atomic

        with self._lock:
            path = self._root / "run.json"
            data = read_json(path)
            for sink, values in self._remembered.items():
                data.setdefault("backends", {}).setdefault(sink, {}).update(values)
            write_json_atomic(path, data)

    def start(self) -> None:
        """Start the worker (the sink starts on its thread), after the back-fill of a resume when the run asked
        for one (batches queue meanwhile), and the stats and parent watchers."""
        if self._backfill_before is None:
            self.worker.start()
        else:
            self._starting = threading.Thread(target=self._backfill_then_start, name="codex-sink-backfill", daemon=True)
            self._starting.start()
        threading.Thread(target=self._report_stats, name="codex-sink-stats", daemon=True).start()
        threading.Thread(target=self._watch_parent, name="codex-sink-parent", daemon=True).start()

    def serve(self, stream: Any) -> None:
        """Handle the run's messages until ``exit`` or the end of ``stream``."""
        while True:
            message = frames.receive(stream)
            if message is None:
                break
            kind = message[0]
            if kind == "batch":
                self.worker.submit(message[1])
            elif kind == "finish":
                self.finish(message[1], message[2])
            elif kind == "upload":
                self._upload(message[1])
            elif kind == "exit":
                return
        self.drain_orphaned()

    def drain_orphaned(self) -> None:
        """The run ended without finishing us (killed): deliver what we have, then close as KILLED."""
        with self._lock:
            self._orphaned, finishing = True, self._finishing
        bound = min(self._close_timeout, ORPHAN_DRAIN_S)
        # Never outlive the trainer by more than the bound, whatever a backend does meanwhile.
        stop = threading.Timer(bound, _exit, args=(0,))
        stop.daemon = True
        stop.start()
        self._write_remembered()  # what the run may not have stored before it died
        if finishing is None:  # the sink's deadline leaves it its grace to close inside the bound
            self.finish("KILLED", time.time() + max(bound - STOP_GRACE - ABORT_WAIT, 0.0))
        self.finished.wait()

    def finish(self, status: str, give_up_at: float) -> None:
        """Start closing the sink with ``status`` by ``give_up_at``; a second call only changes the status."""
        with self._lock:
            self.worker.finish(status, give_up_at)  # again during a close (a SIGTERM): that close ends as KILLED
            if self._finishing is not None:
                return
            self._finishing = threading.Thread(target=self._close, args=(give_up_at,), name="codex-sink-close",
                                               daemon=True)  # fmt: skip
            self._finishing.start()

    def _backfill_then_start(self) -> None:
        from codex_ml.tracking.backfill import backfill

        try:
            backfill(self._root, self.worker.sink.name, self._config, self._replies, before=self._backfill_before)
        finally:
            with self._lock:
                if not self._gave_up_starting:
                    self.worker.start()

    def _close(self, give_up_at: float) -> None:
        worker = self.worker
        if self._starting is not None and not self._started_by(give_up_at):
            worker.abandon_unstarted("its resume back-fill was still running at the close deadline, so it never started")
            self._replies.send(("closed", {"stats": asdict(worker.stats), "abandoned": True, "wants_run_files": False}))
            self.finished.set()
            return
        worker.join(give_up_at - time.time())
        closed = {"stats": asdict(worker.stats), "abandoned": worker.abandoned,
                  "wants_run_files": bool(getattr(worker.sink, "wants_run_files", False))}  # fmt: skip
        self._replies.send(("closed", closed))
        self.finished.set()

    def _started_by(self, give_up_at: float) -> bool:
        """Wait for the back-fill until ``give_up_at``; whether the worker started (else it never will)."""
        self._starting.join(max(give_up_at - time.time(), 0.0))
        with self._lock:
            self._gave_up_starting = self._starting.is_alive()
            return not self._gave_up_starting

    def _upload(self, files: dict[str, str]) -> None:
        error = None
        try:
            self.worker.sink.upload_run_files({k: Path(v) for k, v in files.items()}, threading.Event())
        except Exception as exc:  # noqa: BLE001 - the run turns it into one warning
            error = f"{type(exc).__name__}: {exc}"
        self._replies.send(("uploaded", error))

    def _report_stats(self) -> None:
        last: Any = None
        while not self.finished.wait(STATS_INTERVAL):
            now = (asdict(self.worker.stats), self.worker.phase)
            if now != last and self._replies.send(("stats", *now)):
                last = now

    def _watch_parent(self) -> None:
        # stdin can stay open after the trainer died (a DataLoader worker it forked holds a copy).
        while not self.finished.wait(PARENT_POLL):
            if os.getppid() != self._trainer_pid:
                self._replies.gone = True
                self.drain_orphaned()
                _exit(0)


def _exit(code: int) -> None:
    # os._exit: backend threads (W&B, MLflow's async logging) must not hold the process open after close.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _lower_priority(nice: int, idle: bool) -> None:
    """Lower this process's CPU priority (before it starts any thread: threads and W&B's service inherit it).

    SCHED_IDLE (Linux): the process runs only on a CPU nothing else wants, and a training thread
    that wakes up takes the CPU back at once; with a nice value alone a woken torch thread may
    wait for the end of our time slice, and the whole parallel step waits with it.
    """
    try:
        os.nice(max(0, nice - os.nice(0)))
    except OSError:
        pass  # not allowed here: delivery still works at the same priority
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Serve one sink of a run: argv is ``[REPLY_FD, NICE, IDLE]``; the frames come on stdin."""
    args = sys.argv[1:] if argv is None else argv
    _lower_priority(int(args[1]), args[2:3] == ["idle"])  # first: the backends' imports already run at the lower priority
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; it then finishes us
    stream = os.fdopen(0, "rb", buffering=1 << 20)
    first = frames.receive(stream)
    if first is None or first[0] != "hello":
        return 0
    hello = first[1]
    replies = Replies(int(args[0]), hello["name"])
    try:
        host = Host(hello, replies)
    except Exception as exc:  # noqa: BLE001 - reported by the run as one line; training goes on
        replies.error(hello["sink"], f"its sink process could not start: {type(exc).__name__}: {exc}")
        return 1
    host.start()
    host.serve(stream)
    _exit(0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback; the run reports the sinks lost
        print(f"[monitoring-error] sink-process: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
