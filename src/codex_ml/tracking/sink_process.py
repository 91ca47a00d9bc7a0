"""The run's side of its sink process (tracking/sink_host.py): start it, feed it, hear it, end it.

The dispatcher hands each batch it wrote to metrics.ndjson to every worker; for the sinks that
live in a sink process (TensorBoard, MLflow, W&B: ``Row.own_process``, one process each) those
workers are :class:`RemoteSinkWorker` stand-ins with the SinkWorker interface, which pass the
batch to their :class:`SinkProcess`. The dispatcher thread only appends it to a bounded queue; a
sender thread pickles and writes it to the pipe (so a slow sink process never holds up the NDJSON
writer), and a reader thread applies what comes back: ``[monitoring-error]`` lines and warnings
(printed and kept by this run's Reporter), backend ids to keep in run.json, per-sink counts.

close() goes through the stand-ins exactly as through local workers: ``finish`` sends the status
and the deadline, ``join`` waits for the process's ``closed`` report (the sink's own deadline plus
its grace), then :meth:`SinkProcess.end` lets it exit before the run lock is released. A process
that does not answer in time is killed, and its sink counts as abandoned like a stuck local sink.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from codex_ml.rundir.records import Record
from codex_ml.rundir.sink import RunInfo
from codex_ml.tracking import frames
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.reporting import Reporter
from codex_ml.tracking.worker import ABORT_WAIT, REPLAY_HINT, STOP_GRACE, WorkerStats

#: Seconds past the sinks' own grace that close() waits for the process's report.
REPORT_SLACK = 2.0
#: Seconds ``end`` waits for the process to exit before killing it.
EXIT_WAIT = 3.0
#: Records of one pipe message (larger batches are split, so one message stays a few MB at most).
RECORDS_PER_MESSAGE = 20_000
_NO_ANSWER = object()
_F_SETPIPE_SZ = 1031  # Linux: a 1 MiB pipe lets the writer hand over a whole batch at once


class SinkStub:
    """What the run and closing_upload read of a sink that lives in the sink process."""

    buffered = False

    def __init__(self, name: str, process: SinkProcess) -> None:
        self.name = name
        self.wants_run_files = False  # the process says so at close (the MLflow sink on a server)
        self._process = process

    def upload_run_files(self, files: dict[str, Path], stop: threading.Event) -> None:
        """Have the real sink upload ``files``; raises when it could not."""
        self._process.upload(files, stop)


class RemoteSinkWorker:
    """A SinkWorker's interface for the sink of a sink process (see the module docstring)."""

    def __init__(self, process: SinkProcess, name: str) -> None:
        self.sink = SinkStub(name, process)
        self.stats = WorkerStats()
        self.abandoned = False
        #: The sink's phase in the process (SinkWorker.phase), as last reported.
        self.phase = "starting"
        self._process = process

    def start(self) -> None:
        """Start the sink process (the sink starts over there)."""
        self._process.start()

    def submit(self, batch: list[Record]) -> None:
        """Queue ``batch`` for the process; never blocks."""
        self._process.submit(batch)

    def finish(self, status: str, give_up_at: float) -> None:
        """Ask the process to close its sink with ``status`` by ``give_up_at``."""
        self._process.finish(status, give_up_at)

    @property
    def finished(self) -> bool:
        """Whether the process has reported its sink closed (or is gone)."""
        return self._process.closed

    def join(self, timeout: float, grace: float = STOP_GRACE) -> bool:
        """Wait for the process's closing report; False if the sink was abandoned or the process lost."""
        self._process.join(timeout, grace)
        return not self.abandoned and not self._process.lost


class SinkProcess:
    """Starts, feeds and ends the process that delivers one sink of one run."""

    def __init__(self, name: str, config: TrackingConfig, info: RunInfo, reporter: Reporter,
                 lock_fd: int | None = None) -> None:  # fmt: skip
        self.name = name
        #: The stand-in the run's dispatcher holds in place of a local SinkWorker.
        self.worker = RemoteSinkWorker(self, name)
        #: A resume's back-fill, done by the process before its sink starts: the wall time this
        #: session started (points logged before it are replayed where the backend misses them).
        self.backfill_before: float | None = None
        self._config = config
        self._info = info
        self._reporter = reporter
        self._lock_fd = lock_fd
        self._cond = threading.Condition()
        self._outbox: deque[tuple[Any, ...]] = deque()
        self._pending = 0
        self._dropped = 0
        self._overflow_reported = False
        self._closed = threading.Event()
        #: The answer to the upload asked for (None: done, else the error), or _NO_ANSWER yet.
        self._upload_answer: object = _NO_ANSWER
        #: An upload asked for and not answered: at ``end`` the process is then stuck in it (a frozen server).
        self._uploading = False
        self._process: subprocess.Popen[bytes] | None = None
        self._lost = False

    @property
    def closed(self) -> bool:
        """Whether the closing report came (or the process is gone)."""
        return self._closed.is_set()

    @property
    def lost(self) -> bool:
        """Whether the process failed to start or ended before its closing report."""
        return self._lost

    # -- starting ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the process and the sender and reader threads; the sinks start over there."""
        from codex_ml.secrets.credentials import credentials_for

        reply_r, reply_w = os.pipe()
        keep = (reply_w,) + ((self._lock_fd,) if self._lock_fd is not None else ())
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "codex_ml.tracking.sink_host", str(reply_w), str(self._config.sink_process_nice),
                 "idle" if self._config.sink_process_idle else "normal"],
                # Its own process group (Ctrl-C is the run's to handle) but the run's session: the autogroup
                # scheduler would give a session of its own an equal share of the CPU whatever its priority.
                stdin=subprocess.PIPE, pass_fds=keep, process_group=0,
                env=_child_environment(),
            )
        except OSError as exc:
            os.close(reply_r)
            os.close(reply_w)
            self._give_up(f"could not start: {exc}")
            return
        finally:
            if self._process is not None:
                os.close(reply_w)
        self._grow_pipe(self._process.stdin.fileno())
        uri = self._config.mlflow_tracking_uri
        creds = credentials_for(uri) if uri else None
        hello = {
            "sink": self.name, "backfill_before": self.backfill_before, "config": self._config, "name": self._info.name,
            "run_id": self._info.run_id, "root": str(self._info.paths.root), "resumed": self._info.resumed,
            "backends": self._info.backends, "trainer_pid": os.getpid(),
            "credentials": {uri: tuple(creds)} if creds is not None else {},
        }  # fmt: skip
        self._outbox.append(("hello", hello))
        threading.Thread(target=self._send_loop, name="codex-sink-sender", daemon=True).start()
        reply = os.fdopen(reply_r, "rb", buffering=1 << 16)
        threading.Thread(target=self._read_loop, args=(reply,), name="codex-sink-replies", daemon=True).start()

    @staticmethod
    def _grow_pipe(fd: int) -> None:
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # a smaller pipe only means more, smaller writes

    # -- the dispatcher's side -----------------------------------------------------------
    def submit(self, batch: list[Record]) -> None:
        """Queue ``batch`` for the sender thread, or count it dropped when too much waits already."""
        with self._cond:
            if self._lost or self._closed.is_set() or self._pending + len(batch) > self._config.sink_max_pending:
                self._drop(len(batch))
                return
            self._outbox.append(("batch", batch))
            self._pending += len(batch)
            self._cond.notify()

    def _drop(self, count: int) -> None:
        self._dropped += count
        self.worker.stats.dropped += count
        if not self._lost and not self._overflow_reported:
            self._overflow_reported = True
            self._reporter.error(self.name, f"its sink process is falling behind (over "
                                            f"{self._config.sink_max_pending} records queued); dropping "
                                            f"records for this sink, {REPLAY_HINT}")  # fmt: skip

    def finish(self, status: str, give_up_at: float) -> None:
        """Queue the closing call behind every batch already queued."""
        with self._cond:
            self._outbox.append(("finish", status, give_up_at))
            self._cond.notify()

    def join(self, timeout: float, grace: float = STOP_GRACE) -> bool:
        """Wait for the ``closed`` report: the sinks' deadline, their grace, and a little slack."""
        if self._process is None:
            return False
        if self._closed.wait(max(timeout, 0.0) + grace + ABORT_WAIT + REPORT_SLACK):
            return True
        self._abandon()
        return False

    def upload(self, files: dict[str, Path], stop: threading.Event) -> None:
        """Have the sink upload ``files`` in the process; waits until it says so or ``stop`` is set."""
        with self._cond:
            self._outbox.append(("upload", {k: str(v) for k, v in files.items()}))
            self._upload_answer, self._uploading = _NO_ANSWER, True
            self._cond.notify()
            while self._upload_answer is _NO_ANSWER and not stop.is_set() and not self._lost:
                self._cond.wait(0.05)
            if self._upload_answer is _NO_ANSWER:
                raise RuntimeError("the sink process did not answer")
            error, self._uploading = self._upload_answer, False
        if error is not None:
            raise RuntimeError(error)

    def end(self) -> None:
        """Let the process exit (killed after ``EXIT_WAIT`` s); close() calls this before freeing the run lock."""
        process = self._process
        if process is None:
            return
        if self._uploading:  # close() already waited its deadline for that upload: do not wait again
            self._kill()
            return
        with self._cond:
            self._outbox.append(("exit",))
            self._cond.notify()
        try:
            process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self._kill()

    # -- the threads ---------------------------------------------------------------------
    def _send_loop(self) -> None:
        fd = self._process.stdin.fileno()
        while True:
            with self._cond:
                while not self._outbox:
                    self._cond.wait()
                message = self._outbox.popleft()
                if message[0] == "batch":  # one message for every batch waiting: fewer, larger writes
                    while self._outbox and self._outbox[0][0] == "batch" and len(message[1]) < RECORDS_PER_MESSAGE:
                        message = ("batch", message[1] + self._outbox.popleft()[1])
            try:
                frames.send(fd, message)
            except OSError:
                self._lose_process("stopped reading")
                return
            finally:
                if message[0] == "batch":
                    with self._cond:
                        self._pending -= len(message[1])
            if message[0] == "exit":
                self._process.stdin.close()
                return

    def _read_loop(self, reply: Any) -> None:
        while True:
            try:
                message = frames.receive(reply)
            except Exception as exc:  # noqa: BLE001 - a garbled reply ends the conversation, not the run
                self._lose_process(f"sent an unreadable reply ({type(exc).__name__})")
                break
            if message is None:
                break
            self._apply(message)
        reply.close()
        if not self._closed.is_set():
            self._lose_process("exited")

    def _apply(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "remember":
            self._info.remember(message[1], message[2])
        elif kind == "error":
            self._reporter.error(message[1], message[2])
        elif kind == "warn":
            self._reporter.warn(message[1], message[2])
        elif kind == "stats":
            self._take_stats(message[1])
            self.worker.phase = message[2]
        elif kind == "closed":
            report = message[1]
            self._take_stats(report["stats"])
            self.worker.abandoned = bool(report["abandoned"])
            self.worker.sink.wants_run_files = bool(report["wants_run_files"])
            self.worker.phase = "done"
            self._closed.set()
        elif kind == "uploaded":
            with self._cond:
                self._upload_answer = message[1]
                self._cond.notify_all()

    def _take_stats(self, stats: dict[str, Any]) -> None:
        fresh = WorkerStats(**stats)
        fresh.dropped += self._dropped  # what this side dropped never reached the process
        self.worker.stats = fresh

    # -- when things go wrong ------------------------------------------------------------------
    def _lose_process(self, what: str) -> None:
        with self._cond:
            if self._lost or self._closed.is_set():
                return
            self._lost = True
            self._cond.notify_all()
        code = self._process.poll() if self._process is not None else None
        self._give_up(f"{what}{'' if code is None else f' (exit code {code})'}")

    def _give_up(self, why: str) -> None:
        self._lost = True
        self.worker.stats.disabled = True
        self._reporter.error(self.name, f"its sink process {why}; the sink is off for this run, training goes on; "
                                        f"{REPLAY_HINT}")  # fmt: skip
        self._closed.set()

    def _abandon(self) -> None:
        self._reporter.error(self.name, f"its sink process was still delivering when close() gave up on it; "
                                        f"stopped it: {REPLAY_HINT}")  # fmt: skip
        self.worker.abandoned = True
        self.worker.stats.failures += 1
        self._kill()
        self._closed.set()

    def _kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own process group: W&B's service process goes with it
        except OSError:
            pass
        try:
            process.wait(2.0)
        except subprocess.TimeoutExpired:
            pass


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this codex_ml was imported from first on PYTHONPATH: the
    sink process must import the same codex_ml, also when a script put a source checkout on sys.path."""
    import codex_ml

    source = str(Path(codex_ml.__file__).resolve().parents[1])
    environment = dict(os.environ)
    rest = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = os.pathsep.join([source, rest]) if rest else source
    return environment
