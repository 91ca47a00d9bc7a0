"""Character-level tokenizer: one token id per distinct character.

Saved as a small JSON file (``{"type": "char", "version": 1, "chars": [...]}``)
so other tools can read it without importing this library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["CharTokenizer"]

_FORMAT_TYPE = "char"
_FORMAT_VERSION = 1


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an integer id and back."""

    #: Tokenizer family, as written in saved files (``"type"``).
    kind = _FORMAT_TYPE
    #: No end-of-text token: documents are joined with a separator text instead.
    eot_id: int | None = None

    def __init__(self, chars: Iterable[str]) -> None:
        """Use ``chars`` (in order) as the vocabulary; id ``i`` is ``chars[i]``."""
        itos = list(chars)
        if not itos:
            raise ValueError("CharTokenizer vocabulary is empty")
        for ch in itos:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {ch!r}")
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary contains duplicate characters")
        self._itos = itos
        self._stoi = {ch: i for i, ch in enumerate(itos)}

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        """Build a tokenizer whose vocabulary is the sorted set of characters in ``text``."""
        if not text:
            raise ValueError("cannot fit a CharTokenizer on empty text")
        # Sorting makes ids independent of where a character first appears.
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens."""
        return len(self._itos)

    @property
    def chars(self) -> tuple[str, ...]:
        """The vocabulary, indexed by token id."""
        return tuple(self._itos)

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``; an unknown character raises ``ValueError``."""
        try:
            return [self._stoi[ch] for ch in text]
        except KeyError as err:
            ch = err.args[0]
            raise ValueError(
                f"character {ch!r} (at index {text.index(ch)}) is not in the tokenizer vocabulary"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text for token ``ids``; an out-of-range id raises ``ValueError``."""
        for i in ids:
            if not 0 <= i < len(self._itos):
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return "".join(self._itos[i] for i in ids)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary to ``path`` as UTF-8 JSON."""
        payload = {"type": _FORMAT_TYPE, "version": _FORMAT_VERSION, "chars": self._itos}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or payload.get("type") != _FORMAT_TYPE:
            raise ValueError(f"{path}: not a char tokenizer file (expected type {_FORMAT_TYPE!r})")
        if payload.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported char tokenizer version {payload.get('version')!r} "
                f"(this library reads version {_FORMAT_VERSION})"
            )
        return cls(payload["chars"])

    def __eq__(self, other: object) -> bool:
        """Two tokenizers are equal when their vocabularies match id for id."""
        return isinstance(other, CharTokenizer) and self._itos == other._itos

    def __repr__(self) -> str:
        """Short summary for logs."""
        return f"CharTokenizer(vocab_size={self.vocab_size})"
