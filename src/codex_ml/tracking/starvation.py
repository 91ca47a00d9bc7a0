"""Lifting a starved sink process out of SCHED_IDLE.

A sink process runs under SCHED_IDLE (tracking/sink_host.py): it gets a CPU only when nothing else
wants one. Training leaves idle moments, but a machine whose every core is busy all the time (other
jobs, a data pipeline on every core) would leave it nothing, and its sink would fall further and
further behind. So the run watches each process's progress: when records have waited for
``STARVED_S`` seconds without the process delivering any, every thread of it and of its children
(W&B's service) is moved to SCHED_OTHER, where its nice value (19) still gives way to training but
guarantees it a share.
"""

from __future__ import annotations

import os
import time

#: Seconds of records waiting with no delivery at all before a sink process is promoted.
STARVED_S = 10.0


class StarvationWatch:
    """Records handed to a sink process against records it has reported done."""

    def __init__(self) -> None:
        self._handed = 0
        self._done = 0
        self._done_at = time.monotonic()
        self.promoted = False

    def handed(self, count: int) -> None:
        """``count`` more records went to the process."""
        if self._handed == self._done:
            self._done_at = time.monotonic()  # the wait starts now, not at the last delivery
        self._handed += count

    def done(self, count: int) -> None:
        """The process has now delivered, dropped or given up on ``count`` records in all."""
        if count > self._done:
            self._done, self._done_at = count, time.monotonic()

    def starved(self) -> bool:
        """Whether records have waited ``STARVED_S`` seconds with no progress (and no promotion yet)."""
        return not self.promoted and self._handed > self._done and time.monotonic() - self._done_at > STARVED_S


def promote(pid: int) -> int:
    """Move every thread of ``pid`` and its descendants from SCHED_IDLE to SCHED_OTHER; returns how many moved."""
    if not hasattr(os, "SCHED_OTHER"):
        return 0
    moved = 0
    for process in [pid, *_descendants(pid)]:
        try:
            threads = os.listdir(f"/proc/{process}/task")
        except OSError:
            continue  # exited meanwhile
        for thread in threads:
            try:
                if os.sched_getscheduler(int(thread)) == getattr(os, "SCHED_IDLE", -1):
                    os.sched_setscheduler(int(thread), os.SCHED_OTHER, os.sched_param(0))
                    moved += 1
            except OSError:
                continue  # gone, or not ours to change
    return moved


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", encoding="ascii") as handle:
                children = [int(child) for child in handle.read().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found
