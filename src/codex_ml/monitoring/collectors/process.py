"""The training process and its children (DataLoader workers): CPU, memory, threads, files.

Each process is followed across samples by its identity, (pid, start time), so a reused
pid never inherits a dead worker's numbers; one ``psutil.Process`` is kept per process (a
new one every sample would make ``cpu_percent`` always read 0). A child's first sample
reads 0 % CPU (there is no earlier reading). A child that exits between being listed and
being read is skipped.

On Linux the hot path avoids psutil's per-call overhead: children come from
``/proc/<pid>/task/<tid>/children`` (psutil's ``children()`` reads every process on the
machine), and CPU time, RSS, threads and the start time from one ``pread`` of the process's
``/proc/<pid>/stat``, kept open (psutil opens three files per process per sample).
Elsewhere psutil does all of it. Descriptor counts cost a directory listing (``fds``) or
resolving every descriptor (``open_files``), so both are refreshed every
``open_files_every`` samples per process (and when a process is first seen).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

from codex_ml.monitoring.collectors import Collector, ProcFile, read_file

SKIPPED = (psutil.NoSuchProcess, psutil.AccessDenied)  # ZombieProcess is a NoSuchProcess
TOTALS = ("cpu_percent", "rss_bytes", "threads", "fds", "open_files")
PROCFS = os.path.isdir("/proc/self/task")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _task_children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from procfs; None where the kernel does not list them."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # the process has just exited
    found: list[int] = []
    for tid in tids:
        data = read_file(f"/proc/{pid}/task/{tid}/children")
        if data is None:
            if os.path.exists(f"/proc/{pid}/task/{tid}"):
                return None  # the kernel was built without CONFIG_PROC_CHILDREN
            continue  # the thread has just exited
        found.extend(int(child) for child in data.split())
    return found


def descendant_pids(pid: int) -> list[int]:
    """All descendants of ``pid`` (children, their children, ...)."""
    found: list[int] | None = [] if PROCFS else None
    todo = [pid]
    while todo and found is not None:
        children = _task_children(todo.pop())
        if children is None:
            found = None
        else:
            found.extend(children)
            todo.extend(children)
    if found is not None:
        return found
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except SKIPPED:
        return []


@dataclass
class ProcStat:
    """What one read of /proc/<pid>/stat tells us."""

    name: str
    cpu_seconds: float
    threads: int
    start_ticks: int
    rss_bytes: int


def parse_proc_stat(data: bytes | None) -> ProcStat | None:
    """Parse /proc/<pid>/stat (see proc(5)); None when unreadable or the process is a zombie."""
    if not data:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    head, _, tail = data.rpartition(b")")
    fields = tail.split()  # fields[0] is field 3 (state), so field N is fields[N - 3]
    if fields[0] in (b"Z", b"X"):
        return None  # exited, not yet reaped by its parent: nothing left to measure
    return ProcStat(
        name=head.partition(b"(")[2].decode(errors="replace"),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,  # utime + stime
        threads=int(fields[17]),
        start_ticks=int(fields[19]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


@dataclass
class Tracked:
    """One process followed across samples: (pid, start) is its identity."""

    proc: psutil.Process
    role: str
    start: float  # clock ticks since boot on Linux, psutil's create_time elsewhere
    stat: ProcFile | None = None  # Linux: its /proc/<pid>/stat, kept open
    cpu_seconds: float = 0.0
    read_at: float = 0.0
    fds: int = 0
    open_files: int | None = None  # None: not counted yet


class ProcessCollector(Collector):
    """Per-process rows (main first) under ``processes`` plus their totals and ``count``."""

    name = "process"

    def __init__(self, pid: int | None = None, open_files_every: int = 10) -> None:
        super().__init__()
        self.pid = pid or os.getpid()
        self.open_files_every = max(1, open_files_every)
        #: The pids read in the latest sample (the GPU collector attributes memory with it).
        self.pids: set[int] = {self.pid}
        self._tracked: dict[int, Tracked] = {}
        self._samples = 0

    def start(self) -> None:
        if self._read(self.pid, "main", refresh_files=True) is None:
            raise psutil.NoSuchProcess(self.pid)

    def stop(self) -> None:
        self._forget(set())

    def collect(self) -> None:
        refresh = self._samples % self.open_files_every == 0
        self._samples += 1
        rows = [self._read(self.pid, "main", refresh)]
        rows += [self._read(pid, "child", refresh) for pid in descendant_pids(self.pid)]
        rows = [row for row in rows if row is not None]
        self.pids = {row["pid"] for row in rows}
        if len(self.pids) != len(self._tracked):
            self._forget(self.pids)
        totals: dict[str, Any] = {name: sum(row[name] for row in rows) for name in TOTALS}
        totals["cpu_percent"] = round(totals["cpu_percent"], 1)
        self._data = {"count": len(rows), **totals, "processes": rows}

    def _read(self, pid: int, role: str, refresh_files: bool) -> dict[str, Any] | None:
        try:
            row = self._read_procfs(pid, role) if PROCFS else self._read_psutil(pid, role)
            if row is None:
                return None
            tracked = self._tracked[pid]
            if refresh_files or tracked.open_files is None:
                self._count_files(tracked)
        except (OSError, *SKIPPED):
            if role == "main":
                raise
            return None  # exited (or became unreadable) since it was listed
        row["fds"], row["open_files"] = tracked.fds, tracked.open_files
        return row

    @staticmethod
    def _count_files(tracked: Tracked) -> None:
        proc = tracked.proc
        tracked.fds = proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()
        tracked.open_files = len(proc.open_files())

    def _track(self, pid: int, role: str, start: float, stat: ProcFile | None = None) -> Tracked:
        self._forget_pid(pid)  # a process we followed under this pid has exited
        tracked = self._tracked[pid] = Tracked(psutil.Process(pid), role, start, stat)
        return tracked

    def _read_procfs(self, pid: int, role: str) -> dict[str, Any] | None:
        tracked = self._tracked.get(pid)
        stat = parse_proc_stat(tracked.stat.read()) if tracked and tracked.stat else None
        new = stat is None or stat.start_ticks != tracked.start  # type: ignore[union-attr]
        if new:
            file = ProcFile(f"/proc/{pid}/stat")
            stat = parse_proc_stat(file.read())
            if stat is None:
                file.close()
                return None
            tracked = self._track(pid, role, stat.start_ticks, file)
        now = time.monotonic()
        elapsed = now - tracked.read_at
        percent = 0.0 if new or elapsed <= 0 else 100.0 * (stat.cpu_seconds - tracked.cpu_seconds) / elapsed
        tracked.cpu_seconds, tracked.read_at = stat.cpu_seconds, now
        return {
            "pid": pid, "name": stat.name, "role": role, "cpu_percent": round(max(0.0, percent), 1),
            "rss_bytes": stat.rss_bytes, "threads": stat.threads,
        }  # fmt: skip

    def _read_psutil(self, pid: int, role: str) -> dict[str, Any] | None:
        start = psutil.Process(pid).create_time()
        tracked = self._tracked.get(pid)
        if tracked is None or tracked.start != start:
            tracked = self._track(pid, role, start)
        proc = tracked.proc
        with proc.oneshot():
            percent = proc.cpu_percent(None)  # the first call on a new object returns 0.0
            return {
                "pid": pid, "name": proc.name(), "role": role, "cpu_percent": round(percent, 1),
                "rss_bytes": proc.memory_info().rss, "threads": proc.num_threads(),
            }  # fmt: skip

    def _forget(self, alive: set[int]) -> None:
        for pid in [p for p in self._tracked if p not in alive]:
            self._forget_pid(pid)

    def _forget_pid(self, pid: int) -> None:
        tracked = self._tracked.pop(pid, None)
        if tracked is not None and tracked.stat is not None:
            tracked.stat.close()
