"""The transformer's shape: the one declaration every job builds its model from.

``train-model`` reads it as the ``model`` section, the pipeline as ``pipeline.model``, the demo
job as ``DemoConfig.model``; :class:`~codex_ml.models.transformer.GPTConfig` is this plus the
vocabulary size (which comes from the tokenizer). One ``position`` default holds everywhere:
rotary. Jobs whose documented figures were measured with a learned position table (the demo,
the pipeline) say ``position="learned"`` in their own defaults.

Imports neither torch nor anything heavy, so config modules can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["POSITIONS", "ModelConfig"]

#: The position encodings a model can use.
POSITIONS = ("learned", "rope")


@dataclass
class ModelConfig:
    """The transformer's shape (the vocabulary size comes from the tokenizer)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    #: "rope" (rotary, applied to queries and keys) or "learned" position embeddings (GPT-2).
    #: Rope reaches a markedly lower loss in the same steps (docs/benchmarks.md).
    position: Literal["learned", "rope"] = "rope"
    #: The registered model plugin built with this shape (`codex-ml plugins list models`).
    name: str = "gpt"

    def problems(self) -> list[str]:
        """Values the model cannot be built with, each starting with the field's name."""
        sizes = ("n_layer", "n_head", "n_embd", "block_size")
        out = [f"{k} must be > 0, got {getattr(self, k)}" for k in sizes if getattr(self, k) <= 0]
        if not out and self.n_embd % self.n_head:
            out.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        elif not out and self.position == "rope" and (self.n_embd // self.n_head) % 2:
            # Rotary positions turn pairs of a head's dimensions.
            out.append(f"position rope needs an even head size, got n_embd / n_head = {self.n_embd // self.n_head} "
                       "(change n_embd or n_head, or use position=learned)")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.position not in POSITIONS:
            out.append(f"position must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        from codex_ml.plugins.select import name_problem  # reads entry points; imports no plugin

        if self.name != "gpt" and (problem := name_problem("models", self.name)):
            out.append(f"name: {problem}")
        return out
