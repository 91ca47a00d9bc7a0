"""Ctrl-C and SIGTERM during training: finish the step, checkpoint it, then stop.

Inside ``with GracefulStop() as stop:`` the first SIGINT or SIGTERM only records the signal.
The trainer checks :meth:`GracefulStop.agreed` after each step (under DDP all ranks agree, so
they checkpoint together), writes a checkpoint of that step, closes the run KILLED, and then
calls :meth:`GracefulStop.end_process_as_asked`: SIGINT raises KeyboardInterrupt (the CLI exits
130); SIGTERM goes to the handler that was there before (the tracking core's, which closes any
other open run and then lets the process die of SIGTERM, so the exit status is kept).

The wait is one step (with its eval/sample, if due) and one checkpoint. A second signal in the
meantime stops at once, without that checkpoint, as if this class were not there. A signal that
is ignored (``SIG_IGN``, e.g. SIGINT of a background job) stays ignored; outside the main thread
nothing is installed (Python allows handlers only there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

__all__ = ["EARLY_STOP", "HEALTH_STOP", "GracefulStop"]

#: Recorded like a signal number (above every real one) when a health rule with ``action: stop``
#: fired: the loop stops the same way (agreed by every rank, a checkpoint), then the run ends FAILED.
HEALTH_STOP = 1000
#: Recorded the same way when the caller's ``on_eval`` hook asked to stop early (a sweep's pruner):
#: the loop stops with a checkpoint and the run ends FINISHED; the process goes on.
EARLY_STOP = 1001


class GracefulStop:
    """Defer SIGINT/SIGTERM to a step boundary (see the module docstring)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        #: The signal the loop stops for, once :meth:`agreed` has said so (under DDP the ranks' agreed one).
        self.signum: int | None = None
        # Set only by the handler, never overwritten: a signal arriving while agreed() runs its
        # all-reduce must count at the next step, not be lost when that call stores its result.
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:
                    continue
                self._previous[signum] = signal.SIG_DFL if previous is None else previous
                signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _record(self, signum: int, frame: Any) -> None:
        if self._received is not None:  # the second signal: stop now, the way it would without us
            self._restore()
            signal.raise_signal(signum)
            return
        self._received = signum
        # os.write, not print: the handler may run while the main thread is inside a write to
        # sys.stderr (the progress bar), and a buffered writer refuses a reentrant call.
        with contextlib.suppress(OSError):
            name = signal.Signals(signum).name
            os.write(2, f"\n[train] {name}: stopping after this step with a checkpoint (send {name} again "
                        "to stop at once, without one)\n".encode())

    def request_health_stop(self) -> None:
        """Stop after this step because a health rule asked to (unless a signal came first)."""
        if self._received is None:
            self._received = HEALTH_STOP

    def request_early_stop(self) -> None:
        """Stop after this step because the caller's evaluation hook asked to (unless a signal came first)."""
        if self._received is None:
            self._received = EARLY_STOP

    @property
    def early(self) -> bool:
        """Whether the loop stopped because the evaluation hook asked to."""
        return self.signum == EARLY_STOP

    @property
    def health(self) -> bool:
        """Whether the loop stopped for a health rule rather than a signal."""
        return self.signum == HEALTH_STOP

    @property
    def name(self) -> str:
        """``SIGINT``/``SIGTERM`` of :attr:`signum` (empty before one)."""
        if self.signum == HEALTH_STOP:
            return "health stop"
        if self.signum == EARLY_STOP:
            return "early stop"
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def asked(self) -> int | None:
        """The signal to end with: the agreed one, else one received after the last check."""
        return self.signum or self._received

    def agreed(self, info: Any, device: Any) -> bool:
        """Whether to stop after this step; under DDP a signal on any rank stops every rank."""
        if not info.enabled:
            self.signum = self._received
            return self.signum is not None
        import torch
        import torch.distributed as dist

        box = torch.tensor([self._received or 0], dtype=torch.int64, device=device)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        agreed = int(box.item())
        if agreed:
            self.signum = agreed
        return bool(agreed)

    def end_process_as_asked(self) -> None:
        """After the checkpoint and the close: re-raise the recorded signal with the previous handlers."""
        self._restore()
        if self.asked is None or self.asked in (HEALTH_STOP, EARLY_STOP):
            return
        signal.raise_signal(self.asked)  # SIGINT: KeyboardInterrupt; SIGTERM: the previous handler
        raise KeyboardInterrupt  # a previous handler that returned: the run is closed, stop anyway
