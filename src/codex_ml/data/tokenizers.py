"""Train, save and load the tokenizers a training run uses, by kind (``char``, ``bpe`` or a plugin).

A run keeps its tokenizer as ``<directory>/tokenizer.json``: the tokenizer's own JSON
with its kind in the ``"type"`` field (``{"type": "char", ...}`` or ``{"type": "bpe", ...}``),
so other tools can tell which one it is without importing codex_ml.

Every tokenizer has ``.kind``, ``.vocab_size``, ``.eot_id`` (``None`` for char),
``.encode(text) -> list[int]`` and ``.decode(ids) -> str``.

Any other kind is a tokenizer plugin registered under that name (group ``tokenizers``): a
class with ``train(texts, vocab_size)`` and ``load(path)`` class methods whose instances
have the attributes above and ``save(path)``, writing JSON whose ``"type"`` is the registered
name (so that :func:`load_tokenizer` finds the plugin again on ``--resume``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

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
    if not any(texts):
        raise TokenizerError("cannot train a tokenizer on empty text; check the corpus")
    if kind not in TOKENIZER_KINDS:
        return _plugin(kind, "train")(texts, vocab_size)
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
    if isinstance(kind, str) and kind not in TOKENIZER_KINDS and _registered(kind):
        return _plugin(kind, "load")(path)
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(
            f"{path}: not a codex_ml tokenizer file (\"type\" is {kind!r}, expected one of "
            f"{', '.join(TOKENIZER_KINDS)} or a registered tokenizer plugin)"
        )
    try:
        if kind == "char":
            return CharTokenizer.load(path)
        return BPETokenizer.from_dict(payload, source=str(path))
    except (ValueError, KeyError, TypeError) as err:
        raise TokenizerError(f"{path}: corrupt {kind} tokenizer file: {err}") from None


def _registered(kind: str) -> bool:
    from codex_ml.plugins.select import name_problem

    return name_problem("tokenizers", kind) is None


def _plugin(kind: str, method: str) -> Any:
    """``train`` or ``load`` of the tokenizer plugin ``kind`` (an unknown kind lists the registered ones)."""
    from codex_ml.plugins.registry import UnknownPluginError
    from codex_ml.plugins.select import load

    try:
        plugin = load("tokenizers", kind)
    except UnknownPluginError as exc:
        raise TokenizerError(str(exc)) from None
    if not callable(getattr(plugin, method, None)):
        raise TokenizerError(f"tokenizer plugin {kind!r} has no {method}() class method (see docs/plugins.md)")
    return getattr(plugin, method)
