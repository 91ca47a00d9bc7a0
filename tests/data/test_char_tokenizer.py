"""Tests for codex_ml.data.char_tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codex_ml.data.char_tokenizer import CharTokenizer

SRC = Path(__file__).resolve().parents[2] / "src"
TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler — é ✓"


def test_fit_builds_sorted_vocabulary_and_round_trips() -> None:
    tok = CharTokenizer.fit(TEXT)
    assert tok.vocab_size == len(set(TEXT))
    assert list(tok.chars) == sorted(set(TEXT))
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tok = CharTokenizer.fit(TEXT)
    path = tmp_path / "tok.json"
    tok.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "char"
    loaded = CharTokenizer.load(path)
    assert loaded == tok
    assert loaded.encode(TEXT) == tok.encode(TEXT)


def test_unknown_character_error_names_the_character() -> None:
    tok = CharTokenizer.fit("abc")
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("abz")


def test_decode_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CharTokenizer.fit("abc").decode([0, 3])


def test_invalid_vocabularies_and_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.fit("")
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer(["a", "a"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "bpe"}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a char tokenizer"):
        CharTokenizer.load(bad)


def test_data_package_does_not_import_torch() -> None:
    code = (
        "import sys, codex_ml.data, codex_ml.data.char_tokenizer, codex_ml.data.sample; "
        "assert 'torch' not in sys.modules, 'codex_ml.data imported torch'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_kind_and_eot_id_match_the_shared_tokenizer_interface() -> None:
    tok = CharTokenizer.fit("abc")
    assert tok.kind == "char"
    assert tok.eot_id is None
