"""Tests for codex_ml.data.tokenizers: train/save/load by kind, and their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codex_ml.data.bpe_tokenizer import BPETokenizer
from codex_ml.data.char_tokenizer import CharTokenizer
from codex_ml.data.tokenizers import (
    TOKENIZER_FILE,
    TokenizerError,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from codex_ml.errors import CodexMLError

SRC = Path(__file__).resolve().parents[2] / "src"
TEXTS = ["To be, or not to be", "that is the question — ✓"]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_train_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    tok = train_tokenizer(kind, TEXTS, vocab_size=300)
    assert tok.kind == kind
    path = save_tokenizer(tok, tmp_path / "run")
    assert path == tmp_path / "run" / TOKENIZER_FILE
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == kind
    assert [p.name for p in path.parent.iterdir()] == [TOKENIZER_FILE]  # no temp file left
    loaded = load_tokenizer(tmp_path / "run")
    assert type(loaded) is type(tok) and loaded == tok
    assert loaded.vocab_size == tok.vocab_size and loaded.eot_id == tok.eot_id
    for text in TEXTS:
        assert loaded.decode(loaded.encode(text)) == text
    assert load_tokenizer(path) == tok  # the file itself works too


def test_char_vocab_includes_the_document_separator_and_has_no_eot() -> None:
    tok = train_tokenizer("char", ["ab", "ba"])
    assert isinstance(tok, CharTokenizer)
    assert tok.eot_id is None
    assert set(tok.chars) == {"a", "b", "\n"}


def test_bpe_has_an_eot_id_and_respects_vocab_size() -> None:
    tok = train_tokenizer("bpe", TEXTS * 20, vocab_size=270)
    assert isinstance(tok, BPETokenizer)
    assert tok.eot_id == 0 and tok.vocab_size <= 270


def test_unknown_kind_lists_the_kinds() -> None:
    """A kind that is neither built in nor a registered plugin lists the registered tokenizers."""
    with pytest.raises(TokenizerError, match=r"unknown tokenizers plugin 'word'; registered tokenizers: bpe, char"):
        train_tokenizer("word", TEXTS)


def test_bad_settings_are_tokenizer_errors() -> None:
    with pytest.raises(TokenizerError, match="at least 257"):
        train_tokenizer("bpe", TEXTS, vocab_size=100)
    with pytest.raises(TokenizerError, match="empty text"):
        train_tokenizer("char", ["", ""])
    assert issubclass(TokenizerError, CodexMLError)


def test_missing_tokenizer_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=rf"{TOKENIZER_FILE}: tokenizer file not found"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"type": "char", "chars": ["a"', r"tokenizer\.json:1: corrupt tokenizer file"),
        ('{"type": "wordpiece"}', "not a codex_ml tokenizer file"),
        ("[1, 2]", "not a codex_ml tokenizer file"),
        ('{"type": "char", "version": 1}', "corrupt char tokenizer file"),
        ('{"type": "char", "version": 1, "chars": ["a", "a"]}', "corrupt char.*duplicate"),
        ('{"type": "bpe", "version": 1, "tokenizer": 3}', "corrupt bpe tokenizer file"),
    ],
)
def test_corrupt_tokenizer_files_are_named(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / TOKENIZER_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=expected) as info:
        load_tokenizer(tmp_path)
    assert str(tmp_path / TOKENIZER_FILE) in str(info.value)


def test_invalid_utf8_tokenizer_file_is_named(tmp_path: Path) -> None:
    (tmp_path / TOKENIZER_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(TokenizerError, match="cannot read the tokenizer"):
        load_tokenizer(tmp_path)


def test_tokenizers_module_imports_no_torch_and_no_hf_until_bpe_is_used() -> None:
    code = (
        "import sys, codex_ml.data.tokenizers, codex_ml.data.corpus; "
        "assert 'torch' not in sys.modules, 'imported torch'; "
        "assert 'tokenizers' not in sys.modules, 'imported Hugging Face tokenizers eagerly'"
    )
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
