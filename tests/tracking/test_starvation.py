"""A sink process that SCHED_IDLE leaves without CPU is moved to SCHED_OTHER (tracking/starvation.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from codex_ml.tracking import starvation
from codex_ml.tracking.starvation import StarvationWatch, promote

#: An idle-priority process with a thread and an idle-priority child, as a sink process with W&B's service.
IDLE_FAMILY = """
import os, subprocess, sys, threading, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_records_waiting_without_progress_count_as_starved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starvation, "STARVED_S", 0.2)
    watch = StarvationWatch()
    time.sleep(0.3)
    assert not watch.starved()  # nothing handed over: an idle sink process is not starved
    watch.handed(10)
    assert not watch.starved()  # the wait starts when records are handed over
    time.sleep(0.3)
    assert watch.starved()
    watch.done(10)
    assert not watch.starved()  # it caught up
    watch.handed(5)
    watch.done(12)
    time.sleep(0.3)
    assert watch.starved()  # 3 records have waited past the limit with no progress
    watch.promoted = True
    assert not watch.starved()  # promoted once only


def test_promote_moves_every_thread_and_child_to_sched_other() -> None:
    family = subprocess.Popen([sys.executable, "-c", IDLE_FAMILY], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(family.stdout.readline())
        threads = [int(t) for t in os.listdir(f"/proc/{family.pid}/task")] + [child]
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
        assert promote(family.pid) == len(threads)
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_OTHER}
        assert promote(family.pid) == 0  # nothing left to move
    finally:
        family.kill()
        family.wait()
        if child is not None:
            os.kill(child, signal.SIGKILL)
