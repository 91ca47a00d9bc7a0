"""Where a Prometheus exporter sits in a torchrun job, and the file_sd target it writes into the run directory.

Under torchrun (``WORLD_SIZE`` > 1) every rank serves its own exporter on port ``base + LOCAL_RANK`` and labels
every series ``rank="<RANK>"`` and ``node="<GROUP_RANK>"``. ``node`` is torchrun's node rank, not the host name:
it tells two torchrun agents on one machine apart, it is the number torchrun's own logs and ``--node-rank`` use,
and the host is already in Prometheus' ``instance`` label (the target's ``host:port``). Both labels have as many
values as there are ranks and nodes, and never change during a session.

Each exporter that serves writes its own target, ``<run>/prometheus/rank-<k>.json``, in Prometheus' file_sd JSON
format (``[{"targets": ["host:port"], "labels": {...}}]``), so ``file_sd_configs: [{files:
["<run>/prometheus/*.json"]}]`` finds every rank. One file per rank: each file has one writer (no lock, no
collective at start, ``--prometheus-port 0`` works), written to a temp name and renamed, so Prometheus never
reads half a file. On a shared run directory (multi-node torchrun needs one for checkpoints) the ranks of every
node appear. A closing exporter removes its file (the target goes away with the run, so a finished run is not
"down"); a killed process leaves it, and Prometheus then reports ``up == 0`` for it. An exporter starting in a job
of N ranks removes the files of ranks >= N: an elastic restart with fewer nodes leaves no stale targets.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.env import TORCHRUN_GROUP_RANK, TORCHRUN_LOCAL_RANK, TORCHRUN_RANK, TORCHRUN_WORLD_SIZE
from codex_ml.rundir.run_files import write_json_atomic

__all__ = ["TARGETS_DIR", "Place", "PortRangeError", "remove_target", "read_targets", "target_address", "target_file",
           "torchrun_place", "write_target"]

#: The folder of a run directory holding one file_sd target file per serving exporter.
TARGETS_DIR = "prometheus"
_WILDCARDS = ("0.0.0.0", "::", "")


class PortRangeError(CodexMLError, ValueError):
    """``--prometheus-port`` plus a local rank is past the last port."""

    def __init__(self, base: int, local_rank: int) -> None:
        super().__init__(f"--prometheus-port {base} + local rank {local_rank} = {base + local_rank} is above 65535 "
                         "(each rank serves on the base port plus its local rank); choose a lower --prometheus-port")


@dataclass(frozen=True)
class Place:
    """This process's place in a torchrun job (a single process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    node: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    def labels(self) -> dict[str, str]:
        """``{"rank", "node"}`` under torchrun; nothing for a single process (its series keep today's labels)."""
        return {"rank": str(self.rank), "node": str(self.node)} if self.distributed else {}

    def port(self, base: int | None) -> int | None:
        """``base + local_rank`` (ranks on one node need their own ports); None and 0 (a free port) stay."""
        if not base or not self.distributed:
            return base
        if base + self.local_rank > 65535:
            raise PortRangeError(base, self.local_rank)
        return base + self.local_rank


def torchrun_place(environ: Mapping[str, str] | None = None) -> Place:
    """The place torchrun's variables describe (a single process when ``WORLD_SIZE`` is unset or 1)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get(TORCHRUN_WORLD_SIZE, "1"))
        if world <= 1:
            return Place()
        return Place(int(env.get(TORCHRUN_RANK, "0")), int(env.get(TORCHRUN_LOCAL_RANK, "0")),
                     int(env.get(TORCHRUN_GROUP_RANK, "0")), world)  # fmt: skip
    except ValueError as exc:  # torchrun always sets integers: someone else set these
        raise ValueError(f"torchrun's environment is not integers ({exc}): check RANK, LOCAL_RANK, GROUP_RANK and "
                         "WORLD_SIZE") from exc


def target_address(addr: str, port: int) -> str:
    """The ``host:port`` Prometheus should scrape: the bound address, or this host's name for a wildcard bind."""
    host = socket.gethostname() if addr in _WILDCARDS else addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def target_file(run_root: Path, rank: int) -> Path:
    """``<run>/prometheus/rank-<k>.json``."""
    return Path(run_root) / TARGETS_DIR / f"rank-{rank}.json"


def write_target(run_root: Path, place: Place, address: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Write this exporter's file_sd target atomically, after removing those of ranks beyond the job; returns it."""
    path = target_file(run_root, place.rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("rank-*.json"):
        number = stale.stem.removeprefix("rank-")
        if number.isdigit() and int(number) >= place.world_size:
            stale.unlink(missing_ok=True)  # another rank may remove it at the same moment
    group = [{"targets": [address], "labels": dict(labels)}]
    write_json_atomic(path, group)
    return group


def remove_target(run_root: Path, rank: int, written: list[dict[str, Any]]) -> None:
    """Remove the target file if it still holds what this exporter wrote (a newer session's stays)."""
    path = target_file(run_root, rank)
    if read_targets(path) == written:
        path.unlink(missing_ok=True)


def read_targets(path: Path) -> list[Any] | None:
    """A file_sd file's list of target groups (None when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) else None

