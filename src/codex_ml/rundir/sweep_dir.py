"""The sweep directory: ``sweeps/<sweep>/`` holds one run directory per trial plus two files of its own.

- ``sweep.json``: state shared by the sweep's trials, one section per writer (``mlflow``: the
  tracking URI, experiment id and the id of the sweep's parent run). A writer replaces only its own
  section, under the lock, so sections written by others survive.
- ``sweep.lock``: an exclusive ``flock`` taken while a trial reads or changes what all trials share
  (the parent MLflow run is created once even when trials start at the same instant in separate
  processes). Held for a few backend calls at most; the kernel drops it if the holder dies.

A trial's run directory is ``<sweep dir>/<trial>``, so a run of a sweep finds its sweep directory as
its output root (the run directory's parent).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from codex_ml.rundir.run_files import read_json, write_json_atomic

__all__ = ["SWEEP_FILE", "SWEEP_LOCK", "read_sweep_file", "sweep_lock", "update_sweep_file"]

SWEEP_FILE = "sweep.json"
SWEEP_LOCK = "sweep.lock"


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``<sweep_dir>/sweep.lock`` exclusively (blocking) for the ``with`` block.

    On a filesystem that cannot lock, the block runs unlocked: trials started at the same
    instant could then both create what should be created once (the caller finds it again by
    its tags later), which is better than not running.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / SWEEP_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no locking here (see above)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    """``sweep.json`` as a dict ({} when missing or unreadable)."""
    return read_json(sweep_dir / SWEEP_FILE)


def update_sweep_file(sweep_dir: Path, section: str, values: dict[str, Any]) -> None:
    """Replace ``section`` of ``sweep.json`` with ``values``, keeping the other sections.

    Call it while holding :func:`sweep_lock`: the read-change-write is not atomic by itself.
    """
    data = read_sweep_file(sweep_dir)
    data[section] = values
    write_json_atomic(sweep_dir / SWEEP_FILE, data)
