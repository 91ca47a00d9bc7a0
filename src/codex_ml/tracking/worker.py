"""One background thread per sink: queue, deliver, retry, disable, stop at close.

The dispatcher hands every batch to each worker without waiting. A worker that falls
more than ``max_pending`` records behind drops new batches *for its sink only* (they are
already in the NDJSON log and can be replayed later) and says so once.

At close, a worker delivers what is queued until the close deadline, then stops between two
backend calls and closes its backend; it gets ``STOP_GRACE`` seconds past the deadline for
that. A worker still inside a backend call after that (or still starting at the deadline)
is abandoned: it makes no further call, its sink is asked to ``abort``, and everything not
confirmed stored counts as undelivered. So the counts close() reports are what the backend
holds, and no sink writes after close() returned.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from codex_ml.rundir.records import Record
from codex_ml.tracking.reporting import Reporter
from codex_ml.rundir.sink import RunInfo, Sink, plan_operations

REPLAY_HINT = "they are in metrics.ndjson and can be replayed into the backend later"
#: Seconds past the close deadline a sink has to finish its current call and close its backend.
STOP_GRACE = 3.0
#: Seconds the closing thread waits for an abandoned sink's ``abort``.
ABORT_WAIT = 1.0


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
        #: Records queued or being delivered, not yet counted delivered or undelivered.
        self._pending = 0
        #: Records a buffered sink accepted since it last confirmed storing them (see Sink.buffered).
        self._unconfirmed = 0
        self._cond = threading.Condition()
        self._finishing = False
        self._status = "FINISHED"
        self._give_up_at = float("inf")
        self._phase = "starting"  # then "writing", "closing", "done"
        #: Set when close() gave up on the thread: it must not call the sink or change the counts.
        self.abandoned = False
        self._overflow_reported = False
        self._error_reported = False
        self._thread = threading.Thread(target=self._main, name=f"codex-sink-{sink.name}", daemon=True)

    def start(self) -> None:
        """Start the thread (the sink itself starts on that thread)."""
        self._thread.start()

    @property
    def phase(self) -> str:
        """"starting" (the sink connects), "writing", "closing" or "done"."""
        return self._phase

    @property
    def finished(self) -> bool:
        """Whether the thread has ended (the sink is closed, or was abandoned)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def submit(self, batch: list[Record]) -> None:
        """Queue a batch; never blocks. Called by the dispatcher thread."""
        with self._cond:
            if self.stats.disabled or self.abandoned or self._pending + len(batch) > self._max_pending:
                self._drop(batch)
                return
            self._batches.append(batch)
            self._pending += len(batch)
            self._cond.notify()

    def finish(self, status: str, give_up_at: float) -> None:
        """Ask the thread to deliver what is queued until ``give_up_at``, then close the sink with ``status``."""
        with self._cond:
            self._finishing = True
            self._status = status
            self._give_up_at = give_up_at
            self._cond.notify()

    def join(self, timeout: float, grace: float = STOP_GRACE) -> bool:
        """Wait for the thread; False if it had to be abandoned.

        Waits ``timeout`` seconds, then (unless the sink is still starting: there is nothing
        to save) up to ``grace`` seconds past the close deadline for the sink to stop between
        two calls and close its backend. A thread still running then is abandoned.
        """
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive() and self._phase != "starting":
            deadline = min(self._give_up_at, time.time()) + grace
            self._thread.join(max(deadline - time.time(), 0.0))
        if not self._thread.is_alive():
            return not self.abandoned
        self._abandon()
        return False

    def abandon_unstarted(self, why: str) -> None:
        """Give up on a worker whose thread never started (a sink process's resume back-fill was still running
        at the close deadline): what waits counts as undelivered and ``why`` is reported once."""
        self._abandon(why)

    def _abandon(self, why: str | None = None) -> None:
        """Count everything not confirmed stored as undelivered, report once, ask the sink to let go."""
        with self._cond:
            if self.abandoned:
                return
            self.abandoned = True
            phase = self._phase
            lost = self._pending + self._unconfirmed
            self.stats.delivered -= self._unconfirmed
            self.stats.undelivered += lost
            self.stats.failures += 1
            self._pending = self._unconfirmed = 0
            self._batches.clear()
        if why is None:
            why = ("had not started when close() timed out (is the backend reachable?)" if phase == "starting"
                   else f"still {phase} when close() gave up on it")  # fmt: skip
        self._report(f"{why}; stopped it, {lost} records not delivered: {REPLAY_HINT}", force=True)
        aborting = threading.Thread(target=self._abort_quietly, name=f"codex-abort-{self.sink.name}", daemon=True)
        aborting.start()
        aborting.join(ABORT_WAIT)

    def _abort_quietly(self) -> None:
        try:
            self.sink.abort()
        except Exception:  # noqa: BLE001 - already reported; aborting is best effort
            pass

    def _drop(self, batch: list[Record]) -> None:
        self.stats.dropped += len(batch)
        if not self.stats.disabled and not self.abandoned and not self._overflow_reported:
            self._overflow_reported = True
            self._report(
                f"falling behind (over {self._max_pending} records queued); dropping records for this sink, {REPLAY_HINT}"
            )

    def _out_of_time(self) -> bool:
        return self._finishing and time.time() >= self._give_up_at

    def _main(self) -> None:
        started = self._retrying(lambda: self.sink.start(self._run), "could not start")
        with self._cond:
            if self.abandoned:
                return
            self._phase = "writing"
        while True:
            with self._cond:
                while not self._batches and not self._finishing:
                    self._cond.wait()
                if not self._batches or self._out_of_time() or self.abandoned:
                    break
                batch = self._batches.popleft()
            if started and not self.stats.disabled:
                self._deliver(batch)
            else:
                self._settle(len(batch), delivered=False)
        with self._cond:
            if self.abandoned:
                return
            # Past the deadline: what is still queued stays in the NDJSON log only.
            self.stats.undelivered += self._pending
            self._pending = 0
            self._batches.clear()
            self._phase = "closing"
        self._close_sink(started)

    def _close_sink(self, started: bool) -> None:
        if started and not self.stats.disabled:
            stored = self._retrying(self.sink.flush, "could not flush")
            stored = self._retrying(lambda: self.sink.close(self._status), "could not close") and stored
        elif started:
            stored = self._close_disabled_sink()
        else:
            stored = False
        with self._cond:
            if self.abandoned:
                return
            if not stored:
                # A buffered backend that did not close cleanly may not hold what it accepted.
                self.stats.delivered -= self._unconfirmed
                self.stats.undelivered += self._unconfirmed
            self._unconfirmed = 0
            self._phase = "done"

    def _close_disabled_sink(self) -> bool:
        # One best-effort try, so a disabled MLflow run is not left RUNNING forever.
        try:
            self.sink.close(self._status)
        except Exception:  # noqa: BLE001 - already reported when the sink was disabled
            return False
        return True

    def _deliver(self, batch: list[Record]) -> None:
        left = len(batch)
        for operation, count in plan_operations(self.sink, batch):
            if self._out_of_time() or not self._retrying(operation, "write failed"):
                break
            self._settle(count, delivered=True)
            left -= count
        if left:
            self._settle(left, delivered=False)

    def _settle(self, count: int, delivered: bool) -> None:
        """Move ``count`` pending records to delivered or undelivered (unless abandoned meanwhile)."""
        with self._cond:
            if self.abandoned:
                return
            self._pending -= count
            if not delivered:
                self.stats.undelivered += count
                return
            self.stats.delivered += count
            if self.sink.buffered:
                self._unconfirmed += count

    def _retrying(self, call, what: str) -> bool:
        """Run ``call`` until it succeeds, the failure budget is spent, or close gives up."""
        attempt = 0
        while True:
            try:
                call()
                return not self.abandoned
            except Exception as exc:  # noqa: BLE001 - a sink must never take training down
                if self.abandoned:
                    return False  # close() already reported this sink; say nothing after it
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
        if announce and not self.abandoned:
            self._reporter.warn(
                self.sink.name, f"disabled after repeated failures ({type(exc).__name__}); {REPLAY_HINT}"
            )

    def _report(self, why: str, force: bool = False) -> None:
        # One [monitoring-error] line per sink; later problems are warnings and counts.
        # Once close() has abandoned the sink, only close() itself speaks for it (force).
        if self.abandoned and not force:
            return
        if self._error_reported:
            self._reporter.warn(self.sink.name, why)
        else:
            self._error_reported = True
            self._reporter.error(self.sink.name, why)
