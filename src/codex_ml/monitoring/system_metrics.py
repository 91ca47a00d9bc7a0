"""The system telemetry sampler: a daemon thread driving small collectors.

>>> with SystemMetricsLogger("runs/demo/system_metrics.jsonl", interval=5.0):   # doctest: +SKIP
...     train()

Every ``interval`` seconds each collector (cpu, memory, load, pressure, disk, network,
process, gpu; see ``collectors/``) runs ``collect -> aggregate -> clear`` and the groups go
into one NDJSON line, written with a single ``os.write`` so a crash leaves at most a torn
last line. With ``run`` given, the sample is also forwarded, flattened to ``system/...``
names, to the run's sinks. The sampler never imports torch, never raises into training,
and reports each failing collector once. The schema is in docs/system-metrics.md.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from codex_ml.monitoring.collectors.selection import collectors_by_name, default_collectors
from codex_ml.rundir.encoding import encode_number
from codex_ml.rundir.system_samples import flatten_sample
from codex_ml.rundir.paths import SYSTEM_METRICS_FILE
from codex_ml.tracking.reporting import Reporter

__all__ = [
    "MIN_INTERVAL", "SCHEMA_VERSION", "SystemMetricsLogger", "collectors_by_name", "default_collectors",
    "flatten_sample", "resolve_system_metrics_path", "start_for_run",
]  # fmt: skip

SCHEMA_VERSION = 1
MIN_INTERVAL = 0.1
SOURCE = "system-metrics"
AUTO_FILE = SYSTEM_METRICS_FILE
PSUTIL_MISSING = (
    "psutil is not installed; pip install 'codex-ml[system]' (training continues without system metrics)"
)


def resolve_system_metrics_path(value: str | None, checkpoint_dir: str | os.PathLike[str]) -> Path | None:
    """None/"" -> None (off); "AUTO" -> <checkpoint_dir>/system_metrics.jsonl; relative -> under checkpoint_dir."""
    if value is None or not str(value).strip():
        return None
    if str(value).strip().upper() == "AUTO":
        return Path(checkpoint_dir) / AUTO_FILE
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(checkpoint_dir) / path


def start_for_run(config: Any, run: Any, checkpoint_dir: Path) -> SystemMetricsLogger | None:
    """Start the sampler ``start_run`` asks for (its ``system_sampler`` service), recorded in run.json."""
    from codex_ml.tracking.run import record_system_metrics_file

    path = resolve_system_metrics_path(config.system_metrics, checkpoint_dir)
    if path is None:
        return None
    record_system_metrics_file(run.paths, path)
    return SystemMetricsLogger(path, config.system_metrics_interval, run=run,
                               collector_names=config.system_metrics_collectors).start()  # fmt: skip


class SystemMetricsLogger:
    """Samples system telemetry every ``interval`` seconds on a daemon thread.

    ``start()`` (idempotent, returns self) starts it, ``stop()`` takes a last sample and
    joins; it is also a context manager. ``collector_names`` selects registered collectors by
    name (``system_metrics.collectors``; None: the default set, see :func:`collectors_by_name`);
    ``collectors`` replaces them with ready objects (tests). Problems never raise: they are printed once as
    ``[monitoring-error] system-metrics: ...`` lines (kept in the run's summary.json).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        interval: float = 15.0,
        *,
        run: Any = None,
        include_gpu: bool = True,
        rank: int | None = None,
        collectors: list[Any] | None = None,
        collector_names: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = self._check_interval(interval)
        self.run = run
        self.include_gpu = include_gpu
        self.rank = rank
        self.samples_written = 0
        self.gpu_enabled = False
        #: CPU seconds the sampler thread has spent taking and writing samples.
        self.cpu_seconds = 0.0
        self._reporter: Reporter = getattr(run, "reporter", None) or Reporter(SOURCE)
        self._custom_collectors = collectors
        self._collector_names = list(collector_names) if collector_names else None
        self._collectors: list[Any] = []
        self._failing: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fd: int | None = None
        self._next_sample = 0
        self._last_sample_at = 0.0
        self._psutil_reported = False

    def _check_interval(self, interval: float) -> float:
        interval = float(interval)
        if not math.isfinite(interval) or interval < 0:
            raise ValueError(f"system metrics interval must be a non-negative number of seconds, got {interval!r}")
        if interval < MIN_INTERVAL:
            # One [monitoring] line, like every other sampler notice (a Python warning would say it twice).
            message = f"interval {interval:g}s is below the minimum; using {MIN_INTERVAL:g}s"
            print(f"[monitoring] {SOURCE}: {message}", file=sys.stderr, flush=True)
            interval = MIN_INTERVAL
        return interval

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> SystemMetricsLogger:
        """Start sampling (a no-op while running). Never raises; problems are printed."""
        if self._thread is not None and self._thread.is_alive():
            return self
        if not self._psutil_available():
            return self
        if not self._open_file():
            return self
        try:
            self._collectors = self._start_collectors()
            self._stop.clear()
            self._last_sample_at = time.monotonic()
            self._thread = threading.Thread(target=self._loop, name="codex-ml-system-metrics", daemon=True)
            self._thread.start()
        except Exception as exc:  # e.g. no thread can be started: training goes on without us
            self._reporter.error(SOURCE, f"cannot start: {_why(exc)} (training continues without system metrics)")
            self._thread = None
            self._close()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Take a last sample, stop the thread and release NVML and the file. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                message = f"sampler did not stop within {timeout:g}s; it stops after its current sample"
                self._reporter.warn(SOURCE, message)

    def __enter__(self) -> SystemMetricsLogger:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _psutil_available(self) -> bool:
        try:
            import psutil  # noqa: F401
        except ImportError:
            if not self._psutil_reported:
                self._psutil_reported = True
                self._reporter.error(SOURCE, PSUTIL_MISSING)
            return False
        return True

    def _open_file(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._next_sample = _continue_from(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except (OSError, ValueError) as exc:
            self._reporter.error(SOURCE, f"cannot write {self.path}: {exc} (training continues without system metrics)")
            return False
        return True

    def _start_collectors(self) -> list[Any]:
        from codex_ml.monitoring.collectors import Unavailable

        def left_out(name: str, exc: BaseException) -> None:
            self._reporter.error(SOURCE, f"collector {name}: {_why(exc)} (left out of the samples)")

        candidates = self._custom_collectors or collectors_by_name(self._collector_names, self.include_gpu,
                                                                    on_error=left_out)
        started = []
        for collector in candidates:
            collector.warn = self._warn
            try:
                collector.start()
            except Unavailable as exc:
                if not exc.quiet:
                    self._warn(str(exc))
                continue
            except Exception as exc:
                self._reporter.error(SOURCE, f"{collector.name}: {_why(exc)} (left out of the samples)")
                continue
            started.append(collector)
        self.gpu_enabled = any(c.name == "gpu" for c in started)
        return started

    def _warn(self, message: str) -> None:
        self._reporter.warn(SOURCE, message)

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            next_at = time.monotonic() + self.interval
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                self._timed_sample()
                next_at += self.interval
                if next_at < time.monotonic():  # we were suspended: skip the missed samples
                    next_at = time.monotonic() + self.interval
            # The last stretch before stop(); always at least one sample, even for a short job.
            if self.samples_written == 0 or time.monotonic() - self._last_sample_at >= MIN_INTERVAL:
                self._timed_sample()
        finally:
            self._close()

    def _timed_sample(self) -> None:
        began = time.thread_time()
        try:
            self._write(self._sample())
            self._failing.discard("sampler")
        except Exception as exc:  # never let telemetry end the thread (let alone training)
            self._report_once("sampler", exc)
        self.cpu_seconds += time.thread_time() - began

    def _sample(self) -> dict[str, Any]:
        """Run every collector once and return the record."""
        record: dict[str, Any] = {"v": SCHEMA_VERSION, "time": time.time(), "sample": self._next_sample}
        if self.rank is not None:
            record["rank"] = self.rank
        for collector in self._collectors:
            try:
                collector.collect()
                data = collector.aggregate()
            except Exception as exc:
                self._report_once(collector.name, exc)
                continue
            finally:
                collector.clear()
            self._failing.discard(collector.name)
            if data is not None:
                record[collector.name] = data
        self._last_sample_at = time.monotonic()
        return record

    def _write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        if b"null" in line:  # orjson writes NaN/Infinity as null; records hold no None
            line = orjson.dumps(_encode(record)) + b"\n"
        written = 0
        while written < len(line):  # one write in practice; a short write is finished, not lost
            written += os.write(self._fd, line[written:])  # type: ignore[arg-type]
        self.samples_written += 1
        self._next_sample += 1
        if self.run is not None:
            try:
                self.run.log_system_metrics(flatten_sample(record), record["sample"], record["time"])
            except Exception as exc:
                self._report_once("forwarding to the run", exc)

    def _report_once(self, what: str, exc: BaseException) -> None:
        if what not in self._failing:  # once per failure streak
            self._failing.add(what)
            self._reporter.error(SOURCE, f"{what}: {_why(exc)}")

    def _close(self) -> None:
        for collector in self._collectors:
            try:
                collector.stop()
            except Exception as exc:
                self._report_once(collector.name, exc)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"SystemMetricsLogger(path={str(self.path)!r}, interval={self.interval}, running={running})"


def _encode(value: Any) -> Any:
    """Non-finite floats as "NaN"/"Infinity"/"-Infinity" (orjson would write null)."""
    if type(value) is float:
        return encode_number(value)
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _continue_from(path: Path) -> int:
    """The sample index after the last complete record of an existing file (cutting a torn tail)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    from codex_ml.rundir.reader import repair_torn_tail

    repair_torn_tail(path)
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 65536))
        lines = handle.read().splitlines()
    for line in reversed(lines):
        try:
            return int(orjson.loads(line)["sample"]) + 1
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return 0


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
