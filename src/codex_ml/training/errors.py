"""Errors of the training job (config errors live in :mod:`codex_ml.training.config`)."""

from __future__ import annotations

from codex_ml.errors import CodexMLError

__all__ = ["CheckpointError", "ResumeError", "TrainingError"]


class TrainingError(CodexMLError, RuntimeError):
    """A training job that cannot start or continue; the message says what to change."""


class ResumeError(TrainingError):
    """``--resume`` given something that is not a resumable run directory."""


class CheckpointError(CodexMLError, RuntimeError):
    """A checkpoint that cannot be written, found, read, or applied to the model."""

    #: For a file that did not load: why, in a few words (e.g. "corrupt: ..."), without the advice.
    reason: str = ""
