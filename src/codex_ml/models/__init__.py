"""Model definitions (a small decoder-only transformer).

``GPT`` and ``GPTConfig`` are loaded lazily on first attribute access so that
``import codex_ml.models`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GPT", "GPTConfig", "ModelConfig"]

# name -> submodule that defines it; extend when a model is added.
_LAZY = {"GPT": "transformer", "GPTConfig": "transformer", "ModelConfig": "config"}


def __getattr__(name: str) -> Any:
    """Import the defining submodule (and torch) only when a model class is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value  # cache: later lookups skip this hook
    return value


def __dir__() -> list[str]:
    """List the lazy names too, so tab completion shows them."""
    return sorted(set(globals()) | set(__all__))
