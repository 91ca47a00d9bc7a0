"""Train, save and load the tokenizers a training run uses, by kind (``char`` or ``bpe``).

A run keeps its tokenizer as ``<directory>/tokenizer.json``: the tokenizer's own JSON
with its kind in the ``"type"`` field (``{"type": "char", ...}`` or ``{"type": "bpe", ...}``),
so other tools can tell which one it is without importing codex_ml.

Every tokenizer has ``.kind``, ``.vocab_size``, ``.eot_id`` (``None`` for char),
``.encode(text) -> list[int]`` and ``.decode(ids) -> str``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

from codex_ml.data.bpe_tokenizer import BPETokenizer
from codex_ml.data.char_tokenizer import CharTokenizer
from codex_ml.data.corpus import DOCUMENT_SEPARATOR
from codex_ml.errors import CodexMLError

__all__ = [
    "TOKENIZER_FILE",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
    "save_tokenizer",
    "train_tokenizer",
]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_KINDS = ("char", "bpe")
Tokenizer = Union[CharTokenizer, BPETokenizer]


class TokenizerError(CodexMLError, ValueError):
    """An unknown tokenizer kind, bad settings, or a missing/corrupt tokenizer file."""


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 512) -> Tokenizer:
    """Build a ``kind`` tokenizer from ``texts``.

    ``char``: one id per distinct character (``vocab_size`` is ignored); the document
    separator's newline is always in the vocabulary. ``bpe``: byte-level BPE with at
    most ``vocab_size`` ids.
    """
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(
            f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(TOKENIZER_KINDS)}"
        )
    if not any(texts):
        raise TokenizerError("cannot train a tokenizer on empty text; check the corpus")
    if kind == "char":
        # Sorted set of every character, plus the separator encode_corpus puts between documents.
        return CharTokenizer(sorted(set().union(*map(set, texts), DOCUMENT_SEPARATOR)))
    try:
        return BPETokenizer.fit(texts, vocab_size=vocab_size)
    except ValueError as err:
        raise TokenizerError(str(err)) from None


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike[str]) -> Path:
    """Write ``tokenizer`` to ``<directory>/tokenizer.json`` (atomically) and return that path."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKENIZER_FILE
    tmp = folder / f".{TOKENIZER_FILE}.tmp-{os.getpid()}"
    try:
        tokenizer.save(tmp)
        os.replace(tmp, path)  # a crash never leaves a half-written tokenizer.json
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise TokenizerError(f"{path}: cannot write the tokenizer: {err.strerror or err}") from err
    return path


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """Read the tokenizer saved by :func:`save_tokenizer` in ``directory``.

    ``directory`` may also be the ``tokenizer.json`` file itself.
    """
    path = Path(directory)
    if path.is_dir() or not path.suffix:
        path = path / TOKENIZER_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(
            f"{path}: tokenizer file not found; train one first (it is saved next to the "
            "checkpoints) or point to the run directory that has it"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path}: cannot read the tokenizer: {err}") from None
    return _tokenizer_from_text(path, text)


def _tokenizer_from_text(path: Path, text: str) -> Tokenizer:
    """Parse the JSON of a tokenizer file and dispatch on its kind."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise TokenizerError(
            f"{path}:{err.lineno}: corrupt tokenizer file ({err.msg}); delete it and retrain"
        ) from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(
            f"{path}: not a codex_ml tokenizer file (\"type\" is {kind!r}, expected one of "
            f"{', '.join(TOKENIZER_KINDS)})"
        )
    try:
        if kind == "char":
            return CharTokenizer.load(path)
        return BPETokenizer.from_dict(payload, source=str(path))
    except (ValueError, KeyError, TypeError) as err:
        raise TokenizerError(f"{path}: corrupt {kind} tokenizer file: {err}") from None
