"""Distributed helpers: torchrun environment, process group, loss averaging, rank-0 stand-ins.

A process launched by ``torchrun`` has ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment.
CPU uses the gloo backend, CUDA uses NCCL. Rank 0 owns the tracking sinks and the checkpoints;
the other ranks get :class:`NullRun`, so the training loop never branches on rank to log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "NullRun", "all_reduce_mean", "cleanup", "init_distributed", "pick_device"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """"auto" means CUDA when available, else CPU; each rank gets its own GPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from codex_ml.training.errors import TrainingError

            raise TrainingError("training.device=cuda but no CUDA device is available; use training.device=cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(requested_device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; return this process's place and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(requested_device, info.local_rank)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info, device


def all_reduce_mean(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """The mean of ``values`` over all ranks (identity for one process). All ranks must call it."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / info.world_size).tolist()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class NullRun:
    """The run a non-zero rank logs to: accepts every call, writes nothing."""

    system_metrics: Any = None
    #: No health wiring and never a stop request: rank 0's run decides, every rank agrees (GracefulStop).
    health_link: Any = None
    health_stop: Any = None

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Discard scalars."""

    def log_histogram(self, name: str, values: Any, step: int | None = None) -> None:
        """Discard a histogram."""

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Discard text."""

    def log_params(self, params: Any) -> None:
        """Discard params."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Discard tags."""

    def log_artifact(self, path: Any, name: str | None = None) -> None:
        """Discard an artifact."""

    def flush(self, timeout: float = 10.0) -> None:
        """Nothing to flush."""

    def close(self, status: str = "FINISHED", timeout: float | None = None) -> None:
        """Stop this rank's system-metrics sampler, if any."""
        if self.system_metrics is not None:
            self.system_metrics.stop()
