"""The Run: what training code logs to.

Every ``log_*`` call validates its input, timestamps it and appends a tuple to the
dispatcher's queue; that is all the calling thread pays. See dispatcher.py for the rest.

Why this module is longer than ~400 lines: it is one object's whole life, the Run (the log_*
methods, close and its report) and start_run, which opens it under the run lock and writes
run.json; both share the run-file lock and the run.json update rule. The health wiring (rules,
watchdog, events) lives in health_link.py; the Run only hands it records and reads its summary. Each backend's part
(which sinks, back-fill on resume) is read from ``codex_ml.backends``.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError, RunClosedError
from codex_ml.tracking import lifecycle
from codex_ml.tracking.backfill import backfill
from codex_ml.tracking.builtin_sinks import build_sinks
from codex_ml.tracking.closing_upload import upload_run_files
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.dispatcher import Dispatcher
from codex_ml.tracking.health_link import HealthLink, event_record, open_health
from codex_ml.rundir.run_files import read_json as _load_json, write_json_atomic
from codex_ml.rundir.params import flatten_params
from codex_ml.secrets.redaction import redact_params
from codex_ml.rundir.paths import RunPaths, default_run_name, prepare_run_dir
from codex_ml.rundir.reader import last_step
from codex_ml.rundir.records import ARTIFACT, HISTOGRAM, METRICS, PARAMS, SYSTEM, TAGS, TEXT, Record
from codex_ml.tracking.reporting import Reporter
from codex_ml.tracking.run_lock import RunLock
from codex_ml.tracking.services import SYSTEM_SAMPLER, service
from codex_ml.tracking.sink_process import SinkProcess
from codex_ml.rundir.sink import RunInfo, Sink
from codex_ml.tracking.validation import INT64_MAX, INT64_MIN, check_name, coerce_metrics, coerce_step
from codex_ml.tracking.worker import SinkWorker

STATUSES = ("FINISHED", "FAILED", "KILLED")
#: The keys close() writes to summary.json itself (add_summary may not reuse them).
SUMMARY_KEYS = ("run_name", "run_id", "status", "start_time", "end_time", "last_step", "records", "metrics", "sinks",
                "errors", "health")  # fmt: skip
#: After Ctrl-C during close(): how long the NDJSON writer, then the sinks, may still take.
INTERRUPTED_WRITER_WAIT = 10.0
INTERRUPTED_SINK_WAIT = 1.0


class RunExistsError(CodexMLError, FileExistsError):
    """Starting a new run under a name that is already taken."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"a run already exists at {path}: continue it with --resume {path}, "
            "or choose another name with --run-name"
        )


@dataclass
class CloseReport:
    """What close() achieved: per-sink delivery and anything that did not make it."""

    status: str
    records: int
    seconds: float
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = True


class Run:
    """An open run. Create it with :func:`start_run`; use it as a context manager."""

    def __init__(self, info: RunInfo, config: TrackingConfig, dispatcher: Dispatcher, reporter: Reporter) -> None:
        self.info = info
        self.config = config
        self.reporter = reporter
        self._dispatcher = dispatcher
        self._append = dispatcher.queue.append
        self._queue = dispatcher.queue
        self._max_queue = dispatcher.max_queue
        self._wake_threshold = dispatcher.wake_threshold
        self._closed = False
        self._close_lock = threading.Lock()
        self._closing_thread: int | None = None
        self._give_up_at = 0.0
        self._final_status = "FINISHED"
        self._backpressure_reported = False
        self._forked = False
        self._fork_warned = False
        #: The system telemetry sampler started for this run (--system-metrics), if any.
        self.system_metrics: Any = None
        self._started = time.time()
        previous = last_step(info.paths.metrics)
        self._next_step = 0 if previous is None else previous + 1
        self.close_report: CloseReport | None = None
        #: Sections a caller adds to summary.json (add_summary); close() writes them with its own.
        self._summary_sections: dict[str, Any] = {}
        #: What close() wrote to summary.json (None until then).
        self.summary: dict[str, Any] | None = None
        #: The one-writer lock of the run directory, held until close() has written its files.
        self._run_lock: RunLock | None = None
        #: Health rules, watchdog and event counts (tracking/health_link.py); set by start_run.
        self.health_link: HealthLink | None = None
        #: The companion processes of the TensorBoard/MLflow/W&B sinks, one per sink (tracking/sink_process.py).
        self.sink_processes: list[SinkProcess] = []

    # -- identity -------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The run name (a directory under the output root)."""
        return self.info.name

    @property
    def run_id(self) -> str:
        """A unique id, stable across resumes."""
        return self.info.run_id

    @property
    def paths(self) -> RunPaths:
        """The run directory layout."""
        return self.info.paths

    @property
    def sink_names(self) -> list[str]:
        """Names of the sinks this run writes to besides the NDJSON log."""
        return [w.sink.name for w in self._dispatcher.workers]

    # -- the hot path ---------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log scalars at ``step`` (default: one past the last step). Costs microseconds."""
        if self._closed:
            raise RunClosedError(self.info.name)
        values = coerce_metrics(metrics)
        if step is None:
            step = self._next_step
            if step > INT64_MAX:
                raise ValueError(f"step {step} (one past the last step) is outside the int64 range backends store")
        elif type(step) is not int or not INT64_MIN <= step <= INT64_MAX:
            step = coerce_step(step)
        self._next_step = step + 1
        self._append((METRICS, step, time.time(), values))
        if len(self._queue) >= self._wake_threshold:
            self._make_room()

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Log one scalar."""
        self.log_metrics({name: value}, step)

    def _make_room(self) -> None:
        self._dispatcher.wake.set()
        if len(self._queue) < self._max_queue:
            return
        # Backpressure only when the local disk writer itself cannot keep up.
        if not self._backpressure_reported:
            self._backpressure_reported = True
            self.reporter.warn("ndjson", "logging faster than the writer; log calls wait for it (records are never dropped)")
        while len(self._queue) >= self._max_queue // 2 and self._dispatcher.is_alive():
            self._dispatcher.wake.set()
            time.sleep(0.001)

    def log_system_metrics(self, values: dict[str, Any], sample_index: int, wall_time: float | None = None) -> None:
        """Forward one system-telemetry sample to the sinks on its own axis (the sample index).

        Names should start with ``system/``. The sampler's own NDJSON file is the source of
        truth for these, so they are not added to metrics.ndjson.
        """
        if self._closed:
            return  # the sampler may outlive the run by one sample; that is not an error
        self._append((SYSTEM, coerce_step(sample_index), wall_time or time.time(), coerce_metrics(values)))

    def health(self) -> dict[str, Any]:
        """The tracker's own state: queue depth, records written, per-sink counts and errors."""
        errors: dict[str, int] = {}
        for error in self.reporter.errors:
            errors[error["sink"]] = errors.get(error["sink"], 0) + 1
        return {
            "queue_depth": len(self._queue),
            "records_written": self._dispatcher.records_written,
            "sinks": {w.sink.name: asdict(w.stats) for w in self._dispatcher.workers},
            "errors": errors,
        }

    def log_event(self, event: Any) -> None:
        """Record a health event (a :class:`~codex_ml.health.HealthEvent` or its JSON dict): one
        line of events.ndjson, every sink's ``write_event``, the ``health/events`` count."""
        self._check_open()
        self._append(event_record(event))
        self._dispatcher.wake.set()

    @property
    def health_stop(self) -> dict[str, Any] | None:
        """The first health event whose action is ``stop`` (the training loop ends the run on it)."""
        return self.health_link.stop_event if self.health_link is not None else None

    def _step(self, step: Any) -> int:
        return coerce_step(self._next_step if step is None else step)

    def log_histogram(self, name: str, values: Any, step: int | None = None) -> None:
        """Log the distribution of ``values`` (a sequence, numpy array or tensor)."""
        import numpy as np

        self._check_open()
        check_name(name, "histogram")
        if hasattr(values, "detach"):  # torch tensor: copy off the device now, bin later
            values = values.detach().cpu().numpy()
        array = np.array(values, dtype=np.float64, copy=True)
        self._append((HISTOGRAM, self._step(step), time.time(), name, array))

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Log a piece of text (e.g. a generated sample)."""
        self._check_open()
        check_name(name, "text")
        if not isinstance(text, str):
            raise TypeError(f"text {name!r}: expected str, got {type(text).__name__}")
        self._append((TEXT, self._step(step), time.time(), name, text))  # secrets are masked on the writer thread

    def log_params(self, params: Any) -> None:
        """Log (nested) params/config; nested keys are joined with '.', secrets redacted (redaction.py)."""
        self._check_open()
        self._append((PARAMS, 0, time.time(), redact_params(flatten_params(params))))

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values become strings)."""
        self._check_open()
        clean = redact_params({check_name(k, "tag"): str(v) for k, v in tags.items()})
        self._append((TAGS, 0, time.time(), clean))

    def log_artifact(self, path: str | Path, name: str | None = None) -> Path:
        """Copy a file into ``artifacts/`` now, then hand it to the sinks; returns the copy."""
        self._check_open()
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"artifact {source} does not exist or is not a file")
        target_name = name or source.name
        check_name(target_name, "artifact")
        if "/" in target_name or target_name in (".", ".."):
            raise ValueError(f"artifact name {target_name!r} must be a plain file name")
        self.paths.artifacts.mkdir(exist_ok=True)
        target = self.paths.artifacts / target_name
        shutil.copyfile(source, target)
        self._append((ARTIFACT, 0, time.time(), target, target_name))
        return target

    def _check_open(self) -> None:
        if self._closed:
            raise RunClosedError(self.info.name)

    # -- in a child made by fork() -----------------------------------------------------
    def become_fork_child(self) -> None:
        """Switch this copy of the run to direct appends (called in a child after ``fork()``).

        The child has no writer thread. What the parent had queued is the parent's to write,
        so the copy of the queue is dropped (no duplicated lines); records the child logs are
        appended straight to the NDJSON files, one ``O_APPEND`` write per record, so lines from
        parent and child never interleave. They reach the other sinks only by replay.
        """
        self._queue.clear()
        self._forked = True
        if self._run_lock is not None:
            self._run_lock.forget()  # the parent holds the lock; this copy neither frees nor keeps it
        self._append = self._append_from_fork_child

    def _append_from_fork_child(self, record: Record) -> None:
        if record[0] not in (METRICS, HISTOGRAM, TEXT):
            if not self._fork_warned:
                self._fork_warned = True
                self.reporter.warn("run", "params, tags, artifacts and system metrics logged in a forked child are ignored")
            return
        chunks: dict[int, list[bytes]] = {METRICS: [], HISTOGRAM: [], TEXT: []}
        self._dispatcher.encode_record_into(record, chunks)
        for kind, lines in chunks.items():
            if lines:
                self._dispatcher.append_now(kind, lines[0])

    # -- closing --------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued so far to the NDJSON files now (sinks follow on their own)."""
        deadline = time.time() + timeout
        dispatcher = self._dispatcher
        # An empty queue is not enough: the writer may have taken the batch and not written it yet.
        # A drain that starts after this line takes every record logged before it, and drains run
        # one after another, so once that drain has ended everything is in the files.
        started = dispatcher.drains_started
        dispatcher.wake.set()
        while dispatcher.drains_ended <= started and time.time() < deadline and dispatcher.is_alive():
            time.sleep(0.002)
            dispatcher.wake.set()

    def add_summary(self, sections: dict[str, Any]) -> None:
        """Have close() write ``sections`` into summary.json next to the run's own keys.

        summary.json has one writer, close(); a caller with more to report (the pipeline's stages,
        acceptance checks, versions) hands it here before closing. The merge rule: a section may
        not reuse one of the run's own keys (ValueError); a later call replaces an earlier
        section of the same name.
        """
        clash = sorted(set(sections) & set(SUMMARY_KEYS))
        if clash:
            raise ValueError(f"summary sections {clash} would replace the run's own summary keys")
        self._summary_sections.update(sections)

    def close(self, status: str = "FINISHED", timeout: float | None = None) -> CloseReport:
        """Flush, stop the sinks with ``status`` and write summary.json. Idempotent."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if self._forked:
            # The parent owns the run: a forked child must not close its sinks or write its summary.
            return CloseReport(status, 0, 0.0, complete=True)
        if self._closing_thread == threading.get_ident():
            # Re-entered from a signal handler while this thread is already closing: the
            # close in progress finishes with this status (lifecycle re-sends the signal after).
            self._end_as(status)
            return CloseReport(status, self._dispatcher.records_written, 0.0, complete=False)
        with self._close_lock:
            if self.close_report is not None:
                return self.close_report
            self._closing_thread = threading.get_ident()
            self._final_status = status
            began, wait = time.time(), self.config.close_timeout if timeout is None else timeout
            self._give_up_at = began + wait
            lifecycle.closing(self)
            ctrl_c = lifecycle.InterruptWhileClosing()
            try:
                with ctrl_c:
                    try:
                        self.close_report = self._shutdown(wait)
                    except KeyboardInterrupt:
                        # Ctrl-C (or any interrupt) inside the waits: end now, files consistent.
                        self.close_report = self._close_interrupted(began)
                        if not ctrl_c.installed:
                            raise  # not a Ctrl-C of ours to absorb: it goes on up once the files are written
            finally:
                self._closing_thread = None
                if self._run_lock is not None:
                    self._run_lock.release()  # only now may another process open the run
                lifecycle.closed(self, interrupted=ctrl_c.count > 0)
            return self.close_report

    def _end_as(self, status: str) -> None:
        """Change the status of the close in progress, and tell the sinks it still reaches."""
        self._final_status = status
        if self._closed and not self._dispatcher.is_alive():
            # The sinks were (or are about to be) asked to finish; a sink not closed yet closes with this.
            for worker in self._dispatcher.workers:
                worker.finish(status, self._give_up_at)

    def _close_interrupted(self, began: float) -> CloseReport:
        """Ctrl-C during close(): stop waiting for slow sinks, yet leave run.json and
        summary.json KILLED and consistent, and tell every sink that can still hear it."""
        self._final_status = "KILLED"
        self._closed = True
        if self.health_link is not None:
            self.health_link.stop(0.5)
        self.reporter.warn("run", "interrupted while closing: not waiting for the sinks any more; the run ends KILLED")
        # The NDJSON is the source of truth: its writer (local disk) gets to finish.
        self._dispatcher.stop(INTERRUPTED_WRITER_WAIT)
        stop_at = time.time() + INTERRUPTED_SINK_WAIT
        for worker in self._dispatcher.workers:
            worker.finish("KILLED", stop_at)
        report = CloseReport("KILLED", self._dispatcher.records_written, 0.0, complete=False)
        for worker in self._dispatcher.workers:
            done = worker.join(stop_at - time.time())
            report.sinks[worker.sink.name] = asdict(worker.stats)
            if not done or worker.stats.undelivered or worker.stats.dropped:
                self._report_shortfall(worker)
        report.seconds = time.time() - began
        self._write_closing_files(report)
        self._end_sink_process()
        return report

    def _end_sink_process(self) -> None:
        """Let the sink processes exit (they have reported): before close() frees the run lock."""
        for process in self.sink_processes:
            process.end()

    def _shutdown(self, timeout: float) -> CloseReport:
        began = time.time()
        give_up_at = began + timeout
        if self.system_metrics is not None:
            # Stopped while the run still accepts records, so its last sample reaches the sinks.
            self.system_metrics.stop()
        if self.health_link is not None:
            self.health_link.stop()
        self._closed = True
        writer_done = self._dispatcher.stop(max(timeout, 1.0))
        for worker in self._dispatcher.workers:
            worker.finish(self._final_status, give_up_at)
        report = CloseReport(
            self._final_status, self._dispatcher.records_written, 0.0,
            complete=writer_done and not self._dispatcher.records_skipped,
        )
        for worker in self._dispatcher.workers:
            done = worker.join(give_up_at - time.time())
            report.sinks[worker.sink.name] = asdict(worker.stats)
            if not done or worker.stats.undelivered or worker.stats.dropped:
                report.complete = False
                self._report_shortfall(worker)
        report.seconds = time.time() - began
        report.status = self._final_status  # a SIGTERM during close turns it into KILLED
        self._write_closing_files(report)
        # Now that summary.json exists: config, summary and plot for a tracking server (closing_upload.py).
        upload_run_files(self.paths, self._dispatcher.workers, give_up_at, self.reporter)
        self._end_sink_process()
        return report

    def _report_shortfall(self, worker: SinkWorker) -> None:
        stats = worker.stats
        missing = stats.undelivered + stats.dropped
        # An abandoned sink (still busy past the timeout) was already reported, with its count, by its worker.
        if missing and not worker.abandoned:
            self.reporter.warn(
                worker.sink.name,
                f"{missing} records did not reach this sink before close; they are in {self.paths.metrics.name}",
            )

    def _write_closing_files(self, report: CloseReport) -> None:
        d = self._dispatcher
        summary = {
            "run_name": self.name,
            "run_id": self.run_id,
            "status": report.status,
            "start_time": self._started,
            "end_time": time.time(),
            "last_step": d.last_step,
            "records": d.records_written,
            "metrics": d.summary_metrics(),
            "sinks": report.sinks,
            "errors": self.reporter.errors,
            **({"health": self.health_link.summary()} if self.health_link is not None else {}),
            **self._summary_sections,  # add_summary: never one of the keys above
        }
        write_json_atomic(self.paths.summary, summary)
        self.summary = summary
        _update_run_file(self.paths, {"status": report.status, "end_time": summary["end_time"]})

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.close("FINISHED")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("KILLED")
        else:
            self.close("FAILED")

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, dir={str(self.paths.root)!r}, sinks={self.sink_names})"


_run_file_lock = threading.Lock()


def _update_run_file(paths: RunPaths, changes: dict[str, Any]) -> dict[str, Any]:
    with _run_file_lock:
        data = _load_json(paths.run_file)
        data.update(changes)
        write_json_atomic(paths.run_file, data)
        return data


def start_run(
    run_name: str | None = None,
    *,
    config: TrackingConfig | None = None,
    resume: bool = False,
    params: Any = None,
    tags: dict[str, Any] | None = None,
    sinks: list[Sink] | None = None,
    checkpoint_dir: str | Path | None = None,
    health: Any = None,
    **options: Any,
) -> Run:
    """Open a run under ``<output_root>/<run_name>`` and start its background writer.

    ``options`` override fields of ``config`` (e.g. ``enable_tensorboard=True``). With
    ``resume=True`` an existing run is continued: its NDJSON is appended to (after cutting
    a torn last line), steps continue, and the MLflow/W&B runs are reused. Extra ``sinks``
    are added after the built-in ones. Fails before anything runs if a requested sink's
    package is missing or the output root is not writable. With ``system_metrics`` set, a
    system telemetry sampler writes next to ``checkpoint_dir`` (default: the run directory)
    and forwards its samples to the sinks; close() stops it. ``health`` configures the health
    rules (a HealthConfig, a ``health:`` mapping, False for none; None: the defaults, docs/health.md).
    A trial of a sweep (``config.sweep``/``config.trial``) gets the tags ``sweep`` and ``trial`` (a tag
    given in ``tags`` wins) and both in run.json.
    """
    config = (config or TrackingConfig()).replace(**options) if options else (config or TrackingConfig())
    tags = {**sweep_fields(config), **(tags or {})}
    # `is None`, not `or`: an empty name is a mistake to report, not a request for a default.
    name = run_name if run_name is not None else config.run_name
    name = default_run_name() if name is None else name
    built = build_sinks(config)
    all_sinks = built + list(sinks or [])
    paths = prepare_run_dir(config.output_root, name)
    # Taken before run.json is read: whoever holds it is the run's only writer (run_lock.py).
    lock = RunLock.acquire(paths.root)
    try:
        run = _open_locked(paths, name, config, resume, all_sinks, checkpoint_dir, health, lock, len(built))
    except BaseException:
        lock.release()
        raise
    run._run_lock = lock
    if lock.warning:
        run.reporter.warn("run", lock.warning)
    lifecycle.register(run)
    try:
        if params is not None:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
    except BaseException:
        run.close("FAILED")  # do not leave a locked run open behind an exception
        raise
    return run


def _open_locked(paths: RunPaths, name: str, config: TrackingConfig, resume: bool, all_sinks: list[Sink],
                 checkpoint_dir: str | Path | None, health: Any = None, lock: RunLock | None = None,
                 built: int = 0) -> Run:
    """The part of start_run that runs under the lock: read run.json, start the writer and sinks."""
    previous = _load_json(paths.run_file)
    if previous and not resume:
        raise RunExistsError(paths.root)
    session_start = time.time()  # before anything this session logs, after all that earlier ones did
    info, reporter = _run_info(paths, name, previous, config)
    processes, workers = _sink_workers(all_sinks, built, config, info, reporter, lock)
    if previous and config.backfill_on_resume:
        _backfill_sinks(paths, config, previous, reporter, processes, session_start)
    dispatcher = Dispatcher(
        paths, workers, reporter, config.flush_interval, config.fsync, config.max_queue, config.histogram_bins
    )
    if dispatcher.torn_bytes_removed:
        reporter.warn("ndjson", f"cut a torn last line ({dispatcher.torn_bytes_removed} bytes) before resuming")
    dispatcher.health = open_health(paths, health, reporter, dispatcher)
    dispatcher.start()
    dispatcher.health.start()
    run = Run(info, config, dispatcher, reporter)
    run.sink_processes = processes
    run.health_link = dispatcher.health
    info.health = run.health
    if config.system_metrics:
        try:
            run.system_metrics = service(SYSTEM_SAMPLER)(config, run, Path(checkpoint_dir or paths.root))
        except BaseException:
            run.close("FAILED")  # stops the writer and sinks just started; start_run frees the lock
            raise
    return run


def _sink_workers(sinks: list[Sink], built: int, config: TrackingConfig, info: RunInfo, reporter: Reporter,
                  lock: RunLock | None) -> tuple[list[SinkProcess], list[Any]]:
    """A worker per sink, in order: a thread here, or a stand-in for the copy of it in a sink process.

    Of the first ``built`` sinks (the ones build_sinks made from the config), those whose row says
    ``own_process`` (TensorBoard, MLflow, W&B) each get a sink process, which builds its own from the
    same config, unless ``config.sink_process`` is off; a sink object a caller passed in stays here.
    One process per sink: their Python work (W&B's client, TensorBoard's encoding) then runs in
    parallel rather than under one GIL, so close() waits for the slowest, not for their sum.
    """
    from codex_ml.backends import BACKENDS

    own = {id(s) for s in sinks[:built] if (row := BACKENDS.get(s.name)) is not None and row.own_process
           and type(s).__name__ == row.sink and type(s).__module__ == row.module} if config.sink_process else set()

    def remote(sink: Sink) -> bool:
        return id(sink) in own

    names = [s.name for s in sinks if remote(s)]
    if "mlflow" in names:
        # What the in-process sink did at start, for this process too: a user reading the run's file store
        # here afterwards needs MLflow's opt-in, and the sink process inherits the environment.
        from codex_ml.backends import mlflow_utils

        mlflow_utils.prepare_environment(mlflow_utils.resolve_tracking_uri(config.mlflow_tracking_uri, info.paths.root))
    processes = [SinkProcess(name, config, info, reporter, lock.fd if lock is not None else None) for name in names]
    stand_ins = {p.name: p.worker for p in processes}
    workers = [stand_ins[s.name] if remote(s) else SinkWorker(s, info, reporter, config.sink_max_pending,
                                                               config.sink_max_failures) for s in sinks]  # fmt: skip
    return processes, workers


def _run_info(paths: RunPaths, name: str, previous: dict[str, Any], config: TrackingConfig) -> tuple[RunInfo, Reporter]:
    run_id = previous.get("run_id") or uuid.uuid4().hex
    now = time.time()
    sessions = list(previous.get("sessions", [])) + [now]
    state = _update_run_file(
        paths,
        {
            "schema": 1,
            "run_name": name,
            "run_id": run_id,
            "status": "RUNNING",
            "created": previous.get("created", now),
            "sessions": sessions,
            "backends": previous.get("backends", {}),
            # Every backend any session wrote to: resume back-fills those (see _backfill_sinks).
            "sinks": _sinks_used(previous.get("sinks", []), config),
            **sweep_fields(config),
        },
    )
    reporter = Reporter(name)

    def remember(sink: str, values: dict[str, Any]) -> None:
        with _run_file_lock:
            data = _load_json(paths.run_file)
            data.setdefault("backends", {}).setdefault(sink, {}).update(values)
            write_json_atomic(paths.run_file, data)

    info = RunInfo(name, run_id, paths, bool(previous), dict(state.get("backends", {})), remember, reporter.warn)
    return info, reporter


def sweep_fields(config: TrackingConfig) -> dict[str, str]:
    """``{"sweep": ..., "trial": ...}`` for a trial of a sweep (the ones set), {} outside a sweep."""
    return {key: value for key, value in (("sweep", config.sweep), ("trial", config.trial)) if value}


def _sinks_used(before: list[str], config: TrackingConfig) -> list[str]:
    """The backends this or any earlier session wrote to, in a fixed order."""
    now = _replayable_switches(config)
    return [name for name, on in now.items() if on or name in before]


def _replayable_switches(config: TrackingConfig) -> dict[str, bool]:
    """Whether each backend that keeps history (``codex_ml.backends.replayable()``) is switched on."""
    from codex_ml.backends import BACKENDS, replayable

    return {name: BACKENDS[name].enabled(config) for name in replayable()}


def _backfill_sinks(paths: RunPaths, config: TrackingConfig, previous: dict[str, Any], reporter: Reporter,
                    processes: list[SinkProcess], session_start: float) -> None:  # fmt: skip
    """Replay into each backend the earlier sessions used what it misses of the NDJSON.

    A sink in a sink process back-fills there, before its sink starts, the points logged before
    ``session_start``: step 1 then waits for no backend (or its import). Any other runs here, before
    the new session's sinks start, so the replay's writers are closed first. A failure is reported
    and the run goes on (the NDJSON still has everything).
    """
    enabled = _replayable_switches(config)
    wanted = [kind for kind in previous.get("sinks", []) if enabled.get(kind)]
    if not wanted or not paths.metrics.exists():
        return
    for process in processes:
        if process.name in wanted:
            process.backfill_before = session_start
            wanted.remove(process.name)
    for kind in wanted:
        backfill(paths.root, kind, config, reporter)


def record_system_metrics_file(paths: RunPaths, path: Path) -> None:
    """Add ``path`` (rank 0's sampler file) to run.json, where inspect, plot and replay look for it."""
    from codex_ml.tracking.system_files import RUN_KEY, with_recorded

    _update_run_file(paths, {RUN_KEY: with_recorded(_load_json(paths.run_file).get(RUN_KEY), path, paths.root)})
