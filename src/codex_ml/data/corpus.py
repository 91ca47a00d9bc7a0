"""Read a training corpus from disk, encode it to one token stream, and split it.

Formats (chosen by the file suffix, case-insensitive):

- ``.txt``: the whole file is one document (``\\r\\n`` line ends become ``\\n``).
- ``.jsonl``: one document per non-blank line, either a JSON string (``"some text"``)
  or a JSON object with a string ``"text"`` field (other fields are ignored).

Every error is a :class:`CorpusError` naming the file, and ``file:line`` for a bad line.
numpy only; no torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codex_ml.errors import CodexMLError

__all__ = [
    "DOCUMENT_SEPARATOR",
    "SUPPORTED_SUFFIXES",
    "CorpusError",
    "encode_corpus",
    "read_corpus",
    "split_train_val",
]

SUPPORTED_SUFFIXES = (".txt", ".jsonl")
# Joins documents for tokenizers without an end-of-text token (char): a blank line,
# the way paragraphs are already separated in plain text.
DOCUMENT_SEPARATOR = "\n\n"


class CorpusError(CodexMLError, ValueError):
    """A corpus file that is missing, unreadable, malformed or too small."""


class CorpusTokenizer(Protocol):
    """What :func:`encode_corpus` needs from a tokenizer (char and BPE both fit)."""

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""

    @property
    def eot_id(self) -> int | None:
        """Id of the end-of-text token, or ``None`` when the tokenizer has none."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""


def read_corpus(path: str | os.PathLike[str]) -> list[str]:
    """Return the documents of the corpus file ``path`` (see the module docstring)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise CorpusError(
            f"{file}: unsupported corpus format {file.suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    data = _read_bytes(file)
    documents = _read_txt(file, data) if suffix == ".txt" else _read_jsonl(file, data)
    if not any(doc.strip() for doc in documents):
        raise CorpusError(f"{file}: the corpus is empty (no non-whitespace text); add some text")
    return documents


def _read_bytes(file: Path) -> bytes:
    """The raw contents of ``file``, or a CorpusError saying why it cannot be read."""
    if not file.exists():
        raise CorpusError(f"{file}: corpus file not found; check the path (the config key data.path)")
    if file.is_dir():
        raise CorpusError(
            f"{file}: is a directory; pass one {' or '.join(SUPPORTED_SUFFIXES)} file"
        )
    try:
        return file.read_bytes()
    except OSError as err:
        raise CorpusError(f"{file}: cannot read the corpus: {err.strerror or err}") from err


def _decode(file: Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 decode ``data`` (a BOM is dropped); errors name the line of the bad byte."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise CorpusError(
            f"{file}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); "
            "re-save the file as UTF-8"
        ) from None


def _read_txt(file: Path, data: bytes) -> list[str]:
    """A ``.txt`` file is one document."""
    return [_decode(file, data).replace("\r\n", "\n")]


def _read_jsonl(file: Path, data: bytes) -> list[str]:
    """One document per non-blank line; empty strings are dropped (they add no text)."""
    documents = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = _decode(file, raw, first_line=number)
        if not line.strip():
            continue
        text = _document_from_json(file, number, line)
        if text:
            documents.append(text)
    return documents


_EXPECTED = 'a JSON string or a JSON object with a string "text" field'


def _document_from_json(file: Path, number: int, line: str) -> str:
    """The text of one JSONL line, or a CorpusError saying what was expected."""
    try:
        value: Any = json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(
            f"{file}:{number}: invalid JSON ({err.msg} at column {err.colno}); expected {_EXPECTED}"
        ) from None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str):
            return text
        got = "no \"text\" field" if "text" not in value else f'"text" is {_json_type(text)}'
        raise CorpusError(f"{file}:{number}: expected {_EXPECTED}, got an object with {got}")
    raise CorpusError(f"{file}:{number}: expected {_EXPECTED}, got {_json_type(value)}")


def _json_type(value: Any) -> str:
    """JSON's name for the type of a decoded value, for error messages."""
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array",
             dict: "an object", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def encode_corpus(
    documents: Sequence[str], tokenizer: CorpusTokenizer, dtype: Any = np.int32
) -> np.ndarray:
    """Encode ``documents`` into one 1-D token stream (``int32`` by default).

    Documents are joined with the tokenizer's end-of-text id when it has one (BPE),
    otherwise with :data:`DOCUMENT_SEPARATOR` (char). Each document is encoded on its
    own, so no BPE merge spans two documents.
    """
    if tokenizer.vocab_size > np.iinfo(dtype).max + 1:
        raise CorpusError(f"vocab size {tokenizer.vocab_size} does not fit in {np.dtype(dtype)}")
    encoded = _encode_documents(documents, tokenizer)
    separator = _separator_ids(tokenizer)
    pieces: list[list[int]] = []
    for i, ids in enumerate(encoded):
        if i:
            pieces.append(separator)
        pieces.append(ids)
    total = sum(len(p) for p in pieces)
    stream = np.empty(total, dtype=dtype)
    offset = 0
    for piece in pieces:
        stream[offset: offset + len(piece)] = piece
        offset += len(piece)
    return stream


def _encode_documents(documents: Sequence[str], tokenizer: CorpusTokenizer) -> list[list[int]]:
    """Token ids per document; an unencodable document is named by its index."""
    batch = getattr(tokenizer, "encode_batch", None)
    if batch is not None:  # BPE encodes a batch in parallel (Rust threads)
        return batch(list(documents))
    encoded = []
    for index, doc in enumerate(documents):
        try:
            encoded.append(tokenizer.encode(doc))
        except ValueError as err:
            raise CorpusError(
                f"document {index}: {err}; retrain the tokenizer on this corpus"
            ) from None
    return encoded


def _separator_ids(tokenizer: CorpusTokenizer) -> list[int]:
    """Ids that go between two documents."""
    if tokenizer.eot_id is not None:
        return [tokenizer.eot_id]
    try:
        return tokenizer.encode(DOCUMENT_SEPARATOR)
    except ValueError:
        raise CorpusError(
            "the tokenizer cannot encode the document separator '\\n\\n' (no newline in its "
            "vocabulary); train it with codex_ml.data.tokenizers.train_tokenizer, which adds it"
        ) from None


def split_train_val(
    ids: Sequence[int] | np.ndarray, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream: the head is training data, the last ``val_fraction`` validation.

    Deterministic (no shuffling), like nanoGPT. Both parts must be non-empty.
    """
    if not 0.0 < val_fraction < 1.0:
        raise CorpusError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    stream = np.asarray(ids)
    if stream.ndim != 1:
        raise CorpusError(f"expected a 1-D token stream, got shape {stream.shape}")
    n_train = int(len(stream) * (1.0 - val_fraction))
    if n_train == 0 or n_train == len(stream):
        raise CorpusError(
            f"the corpus has {len(stream)} tokens: too few to split with "
            f"val_fraction={val_fraction} (train and validation both need a token); "
            "use more text"
        )
    return stream[:n_train], stream[n_train:]
