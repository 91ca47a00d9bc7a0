"""Putting a checkpoint's state back: model weights (every mismatch named) and the global RNG states.

Split from :mod:`codex_ml.training.checkpoints` (which writes, finds and loads the files);
these are importable from there too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from codex_ml.training.checkpoint_integrity import why
from codex_ml.training.errors import CheckpointError

__all__ = ["capture_rng_state", "load_model_state", "restore_rng_state"]


def load_model_state(model: torch.nn.Module, state_dict: dict[str, Any], source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, or explain every mismatch.

    Raises :class:`CheckpointError` naming ``source`` and listing each missing,
    unexpected or differently shaped key (checkpoint shape vs model shape). A
    ``_orig_mod.`` prefix left by ``torch.compile`` is removed first.
    """
    expected = model.state_dict()
    prefix = "_orig_mod."
    compiled = any(k.startswith(prefix) for k in state_dict)
    if compiled and not any(k.startswith(prefix) for k in expected):
        state_dict = {k.removeprefix(prefix): v for k, v in state_dict.items()}
    problems = _state_mismatches(state_dict, expected)
    if problems:
        more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        shown = problems[:20] + more
        raise CheckpointError(
            f"{source}: checkpoint from a different model shape (checkpoint vs model): "
            + "; ".join(shown)
            + ". Use the model config the checkpoint was trained with, or start a new run."
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: cannot load the model weights: {err}") from err


def _state_mismatches(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """One line per key that is missing, unexpected, or shaped differently."""
    problems = []
    for key, want in expected.items():
        if key not in got:
            problems.append(f"{key} missing from the checkpoint (model {_shape(want)})")
        elif _shape(got[key]) != _shape(want):
            problems.append(f"{key} {_shape(got[key])} vs {_shape(want)}")
    problems += [
        f"{key} {_shape(v)} not in the model" for key, v in got.items() if key not in expected
    ]
    return problems


def _shape(value: Any) -> str:
    """``(384, 128)`` for a tensor; the type name for anything else."""
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


# ---------------------------------------------------------------------------- RNG state

def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python ``random``, numpy, torch CPU and (if present) CUDA.

    Stored as tuples, lists and tensors only, so it loads with ``weights_only=True``.
    Generators you create yourself (``np.random.default_rng``, ``torch.Generator``)
    are not included: save their state yourself.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {**np_state, "state": {"key": np_state["state"]["key"].tolist(),
                                        "pos": int(np_state["state"]["pos"])}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`capture_rng_state`'s states, so random draws continue identically."""
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np_state = state["numpy"]
        key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
        np.random.set_state({**np_state, "state": {"key": key, "pos": np_state["state"]["pos"]}})
        torch.set_rng_state(state["torch"].cpu())
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"invalid RNG state in checkpoint ({why(err)})") from err
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        # A resume on fewer GPUs restores the ones present; extra states are ignored.
        count = min(len(cuda), torch.cuda.device_count())
        for device, device_state in enumerate(cuda[:count]):
            torch.cuda.set_rng_state(device_state.cpu(), device)
