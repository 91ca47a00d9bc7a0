"""Random training windows over a token stream, with a checkpointable random state."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["RandomWindows"]


class RandomWindows:
    """Draws ``batch_size`` random windows of ``block_size`` tokens (inputs and next-token targets).

    The windows come from a private ``torch.Generator``, so evaluation and sampling never
    shift the training stream, and its state goes into checkpoints: a resumed run sees the
    exact batches an uninterrupted one would have.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, block_size: int, seed: int) -> None:
        if len(data) <= block_size:
            from codex_ml.training.errors import TrainingError

            raise TrainingError(f"{len(data)} tokens cannot fill one window of block_size+1={block_size + 1}; "
                                "use a larger corpus or a smaller model.block_size")
        self.data = data  # (N,) int64
        self.batch_size = batch_size
        self.block_size = block_size
        self.generator = torch.Generator().manual_seed(seed)
        # Offsets 0..T let one gather build the whole (B, T) batch instead of B Python slices.
        self._offsets = torch.arange(block_size + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, T) and targets (B, T), on the CPU."""
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.generator)
        windows = self.data[starts[:, None] + self._offsets]  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        """The generator state (a uint8 tensor)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
