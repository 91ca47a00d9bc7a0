"""Byte-level BPE tokenizer trained on the corpus with Hugging Face ``tokenizers``.

Like GPT-2: text is split into UTF-8 bytes mapped to 256 printable symbols (the
ByteLevel pre-tokenizer), merges are learned on top, and the ByteLevel decoder maps
back, so *any* text round-trips exactly. Id 0 is the special ``<|endoftext|>`` token
that separates documents; the literal string ``<|endoftext|>`` inside text is encoded
as ordinary text, so only the data pipeline can produce that id.

Saved as one JSON file ``{"type": "bpe", "version": 1, "tokenizer": {...}}`` whose
``tokenizer`` value is the Hugging Face tokenizer JSON (readable without codex_ml).
The ``tokenizers`` package (extra ``train``) is imported only when a BPE tokenizer is
built or loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from codex_ml.errors import MissingExtraError

__all__ = ["EOT_TOKEN", "MIN_VOCAB_SIZE", "BPETokenizer"]

EOT_TOKEN = "<|endoftext|>"
_FORMAT_TYPE = "bpe"
_FORMAT_VERSION = 1
# 256 byte symbols + the end-of-text token; anything smaller cannot encode every text.
MIN_VOCAB_SIZE = 257


def _hf() -> Any:
    """The ``tokenizers`` package, or a MissingExtraError naming the extra."""
    try:
        import tokenizers
    except ImportError:
        raise MissingExtraError("the BPE tokenizer", "tokenizers", "train") from None
    return tokenizers


class BPETokenizer:
    """Byte-level BPE with an ``<|endoftext|>`` token; same interface as CharTokenizer."""

    #: Tokenizer family, as written in saved files (``"type"``).
    kind = _FORMAT_TYPE

    def __init__(self, hf_tokenizer: Any) -> None:
        """Wrap a trained ``tokenizers.Tokenizer`` that has the ``<|endoftext|>`` token."""
        eot = hf_tokenizer.token_to_id(EOT_TOKEN)
        if eot is None:
            raise ValueError(f"the BPE tokenizer has no {EOT_TOKEN} token")
        # Text never produces the special id: only encode_corpus inserts it between documents.
        hf_tokenizer.encode_special_tokens = True
        self._tok = hf_tokenizer
        self._eot_id = int(eot)
        self._vocab_size = int(hf_tokenizer.get_vocab_size(with_added_tokens=True))

    @classmethod
    def fit(
        cls, texts: Iterable[str], vocab_size: int = 512, *, show_progress: bool = False
    ) -> BPETokenizer:
        """Train on ``texts``; at most ``vocab_size`` ids (fewer on tiny corpora)."""
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"BPE vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + {EOT_TOKEN}), "
                f"got {vocab_size}"
            )
        hf = _hf()
        tok = hf.Tokenizer(hf.models.BPE())
        # add_prefix_space=False: encode(a + b) == encode(a) + encode(b) at word boundaries,
        # and decode(encode(text)) == text with no added space.
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT_TOKEN],  # first, so its id is 0
            # All 256 byte symbols, even those absent from the corpus: any text can be encoded.
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, including ``<|endoftext|>``."""
        return self._vocab_size

    @property
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>``, the document separator."""
        return self._eot_id

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text`` (every string can be encoded)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, encoded in parallel."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text for token ``ids``; an out-of-range id raises ``ValueError``."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self._vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        # Keep <|endoftext|> in the text so decode(encode_corpus(...)) shows document breaks.
        return self._tok.decode(ids, skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        """The saved form: type, version and the Hugging Face tokenizer JSON."""
        return {"type": _FORMAT_TYPE, "version": _FORMAT_VERSION,
                "tokenizer": json.loads(self._tok.to_str())}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer to ``path`` as UTF-8 JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, payload: Any, source: str = "<dict>") -> BPETokenizer:
        """Rebuild a tokenizer from :meth:`to_dict`'s output; ``source`` names it in errors."""
        if not isinstance(payload, dict) or payload.get("type") != _FORMAT_TYPE:
            raise ValueError(f"{source}: not a BPE tokenizer file (expected type {_FORMAT_TYPE!r})")
        if payload.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{source}: unsupported BPE tokenizer version {payload.get('version')!r} "
                f"(this library reads version {_FORMAT_VERSION})"
            )
        if not isinstance(payload.get("tokenizer"), dict):
            raise ValueError(f"{source}: the 'tokenizer' field is missing or not an object")
        try:
            hf_tok = _hf().Tokenizer.from_str(json.dumps(payload["tokenizer"]))
        except Exception as err:  # the Rust side raises a plain Exception
            raise ValueError(f"{source}: invalid Hugging Face tokenizer JSON: {err}") from None
        return cls(hf_tok)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`."""
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_dict(payload, source=str(path))

    def __eq__(self, other: object) -> bool:
        """Two tokenizers are equal when their vocabularies and merges match."""
        return isinstance(other, BPETokenizer) and self._tok.to_str() == other._tok.to_str()

    def __repr__(self) -> str:
        """Short summary for logs."""
        return f"BPETokenizer(vocab_size={self.vocab_size})"
