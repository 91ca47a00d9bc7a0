"""One background thread per sink: queue, deliver, retry, disable.

The dispatcher hands every batch to each worker without waiting. A worker that falls
more than ``max_pending`` records behind drops new batches *for its sink only* (they are
already in the NDJSON log and can be replayed later) and says so once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from codex_ml.tracking.records import Record
from codex_ml.tracking.reporting import Reporter
from codex_ml.tracking.sink import RunInfo, Sink, plan_operations

REPLAY_HINT = "they are in metrics.ndjson and can be replayed into the backend later"


@dataclass
class WorkerStats:
    """Delivery counts for one sink, reported by close() and summary.json."""

    delivered: int = 0
    dropped: int = 0
    undelivered: int = 0
    failures: int = 0
    disabled: bool = False


class SinkWorker:
    """Drives one sink on its own daemon thread."""

    def __init__(
        self,
        sink: Sink,
        run: RunInfo,
        reporter: Reporter,
        max_pending: int = 200_000,
        max_failures: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.sink = sink
        self.stats = WorkerStats()
        self._run = run
        self._reporter = reporter
        self._max_pending = max_pending
        self._max_failures = max_failures
        self._backoff = backoff
        self._batches: deque[list[Record]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._finishing = False
        self._status = "FINISHED"
        self._give_up_at = float("inf")
        self._overflow_reported = False
        self._error_reported = False
        self._thread = threading.Thread(target=self._main, name=f"codex-sink-{sink.name}", daemon=True)

    def start(self) -> None:
        """Start the thread (the sink itself starts on that thread)."""
        self._thread.start()

    def submit(self, batch: list[Record]) -> None:
        """Queue a batch; never blocks. Called by the dispatcher thread."""
        with self._cond:
            if self.stats.disabled or self._pending + len(batch) > self._max_pending:
                self._drop(batch)
                return
            self._batches.append(batch)
            self._pending += len(batch)
            self._cond.notify()

    def finish(self, status: str, give_up_at: float) -> None:
        """Ask the thread to deliver what is queued, then close the sink with ``status``."""
        with self._cond:
            self._finishing = True
            self._status = status
            self._give_up_at = give_up_at
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; on timeout, count what is still queued as undelivered."""
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive():
            with self._cond:
                self.stats.undelivered += self._pending
                self._pending = 0
                self._batches.clear()
            return False
        return True

    def _drop(self, batch: list[Record]) -> None:
        self.stats.dropped += len(batch)
        if not self.stats.disabled and not self._overflow_reported:
            self._overflow_reported = True
            self._report(
                f"falling behind (over {self._max_pending} records queued); dropping records for this sink, {REPLAY_HINT}"
            )

    def _main(self) -> None:
        started = self._retrying(lambda: self.sink.start(self._run), "could not start")
        while True:
            with self._cond:
                while not self._batches and not self._finishing:
                    self._cond.wait()
                if not self._batches:
                    break
                batch = self._batches.popleft()
            if started and not self.stats.disabled:
                self._deliver(batch)
            else:
                self.stats.undelivered += len(batch)
            with self._cond:
                self._pending -= len(batch)
        if started and not self.stats.disabled:
            self._retrying(self.sink.flush, "could not flush")
            self._retrying(lambda: self.sink.close(self._status), "could not close")
        elif started:
            self._close_disabled_sink()

    def _close_disabled_sink(self) -> None:
        # One best-effort try, so a disabled MLflow run is not left RUNNING forever.
        try:
            self.sink.close(self._status)
        except Exception:  # noqa: BLE001 - already reported when the sink was disabled
            pass

    def _deliver(self, batch: list[Record]) -> None:
        for operation in plan_operations(self.sink, batch):
            if not self._retrying(operation, "write failed"):
                self.stats.undelivered += len(batch)
                return
        self.stats.delivered += len(batch)

    def _retrying(self, call, what: str) -> bool:
        """Run ``call`` until it succeeds, the failure budget is spent, or close gives up."""
        attempt = 0
        while True:
            try:
                call()
                return True
            except Exception as exc:  # noqa: BLE001 - a sink must never take training down
                attempt += 1
                self.stats.failures += 1
                if getattr(exc, "retryable", True) is False:
                    # Retrying cannot help (e.g. the port is taken): say exactly why, once, and stop.
                    self._report(f"{what}: {exc}; the sink is off for this run, other sinks and training go on")
                    self._disable(exc, announce=False)
                    return False
                if attempt == 1:
                    self._report(
                        f"{what}: {type(exc).__name__}: {exc} (retrying; the sink is disabled after "
                        f"{self._max_failures} failures in a row, other sinks and training go on)",
                    )
                delay = self._backoff * 2 ** (attempt - 1)
                if attempt >= self._max_failures or time.time() + delay > self._give_up_at:
                    self._disable(exc)
                    return False
                time.sleep(delay)

    def _disable(self, exc: Exception, announce: bool = True) -> None:
        with self._cond:
            self.stats.disabled = True
        if announce:
            self._reporter.warn(
                self.sink.name, f"disabled after repeated failures ({type(exc).__name__}); {REPLAY_HINT}"
            )

    def _report(self, why: str) -> None:
        # One [monitoring-error] line per sink; later problems are warnings and counts.
        if self._error_reported:
            self._reporter.warn(self.sink.name, why)
        else:
            self._error_reported = True
            self._reporter.error(self.sink.name, why)
